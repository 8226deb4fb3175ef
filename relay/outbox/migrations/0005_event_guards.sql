-- Guards that keep one bad row from wedging the pipeline for every aggregate type, held by the
-- database so that raw SQL is held to them too (the writer checks the same before any SQL):
--  * size: payload (as published) + aggregateid + headers at most relay_outbox_limits.max_event_bytes
--    (`relay outbox migrate` stores RELAY_MAX_EVENT_BYTES there; topics and producers carry it);
--  * topic names: Kafka refuses `outbox.event.a.b` once `outbox.event.a_b` exists ('.' and '_'
--    collide), so the first aggregate type of each collision key wins and the other is refused.
-- Both raise check_violation with a named constraint, the offending value in DETAIL and what was
-- expected in HINT.
CREATE TABLE relay_outbox_limits (
    singleton        boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    max_event_bytes  integer NOT NULL CHECK (max_event_bytes > 0)
);

CREATE TABLE relay_outbox_topics (
    collision_key  text PRIMARY KEY,              -- aggregatetype with '.' replaced by '_'
    aggregatetype  text NOT NULL UNIQUE,
    first_seen     timestamptz NOT NULL DEFAULT now()
);
INSERT INTO relay_outbox_topics (collision_key, aggregatetype)
SELECT DISTINCT ON (translate(aggregatetype, '.', '_')) translate(aggregatetype, '.', '_'), aggregatetype
FROM (SELECT aggregatetype, min(created_at) AS first FROM outbox GROUP BY 1
      UNION ALL SELECT aggregatetype, min(created_at) FROM outbox_avro GROUP BY 1) seen
ORDER BY translate(aggregatetype, '.', '_'), first
ON CONFLICT DO NOTHING;

CREATE FUNCTION relay_outbox_guard_event(event_id uuid, agg text, size bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    lim integer;
    known text;
    ckey text := translate(agg, '.', '_');
BEGIN
    SELECT max_event_bytes INTO lim FROM relay_outbox_limits;
    IF lim IS NOT NULL AND size > lim THEN
        RAISE EXCEPTION 'outbox event % (aggregatetype %) is % bytes (payload as published + aggregateid + headers); the limit is % bytes', event_id, agg, size, lim
            USING ERRCODE = 'check_violation', CONSTRAINT = 'outbox_event_size', DETAIL = size || ' bytes',
                  HINT = 'at most ' || lim || ' bytes for payload + aggregateid + headers (RELAY_MAX_EVENT_BYTES); '
                         'store large content elsewhere and publish a reference';
    END IF;
    SELECT aggregatetype INTO known FROM relay_outbox_topics WHERE collision_key = ckey;
    IF NOT FOUND THEN
        INSERT INTO relay_outbox_topics (collision_key, aggregatetype) VALUES (ckey, agg) ON CONFLICT DO NOTHING;
        SELECT aggregatetype INTO known FROM relay_outbox_topics WHERE collision_key = ckey;
    END IF;
    IF known IS DISTINCT FROM agg THEN
        RAISE EXCEPTION 'aggregatetype % collides with % already in use: Kafka treats ''.'' and ''_'' alike in topic names and refuses outbox.event.% next to outbox.event.%', agg, known, agg, known
            USING ERRCODE = 'check_violation', CONSTRAINT = 'outbox_topic_collision', DETAIL = agg,
                  HINT = 'an aggregate type whose topic does not collide with outbox.event.' || known
                         || ' (use ' || quote_literal(known) || ')';
    END IF;
END $$;

CREATE FUNCTION relay_outbox_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM relay_outbox_guard_event(NEW.id, NEW.aggregatetype,
        coalesce(octet_length(NEW.payload::text), 0) + octet_length(NEW.aggregateid)
        + coalesce(octet_length(NEW.headers::text), 0));
    RETURN NEW;
END $$;

CREATE FUNCTION relay_outbox_avro_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM relay_outbox_guard_event(NEW.id, NEW.aggregatetype,
        coalesce(octet_length(NEW.payload), 0) + octet_length(NEW.aggregateid)
        + coalesce(octet_length(NEW.headers::text), 0));
    RETURN NEW;
END $$;

CREATE TRIGGER relay_outbox_guard BEFORE INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION relay_outbox_guard();
CREATE TRIGGER relay_outbox_avro_guard BEFORE INSERT ON outbox_avro
    FOR EACH ROW EXECUTE FUNCTION relay_outbox_avro_guard();
