-- Events of aggregate types declared `avro` (schemas/<aggregatetype>/format): the same columns
-- as `outbox`, but the payload is Avro single-object-encoded bytes. One aggregate type lives in
-- exactly one of the two tables, so per-aggregate order never spans them. Debezium reads both
-- through the same publication and connector (BinaryDataConverter passes bytes through and hands
-- JSON text to StringConverter).
CREATE TABLE outbox_avro (
    id               uuid        PRIMARY KEY,
    aggregatetype    text        NOT NULL CHECK (aggregatetype ~ '^[A-Za-z0-9._-]{1,200}$'),
    aggregateid      text        NOT NULL CHECK (aggregateid <> ''),
    type             text        NOT NULL CHECK (type <> ''),
    payload          bytea,
    idempotency_key  text,
    request_hash     text,
    headers          jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    published_at     timestamptz,
    publish_attempts integer     NOT NULL DEFAULT 0,
    last_error       text,
    seq              bigint      GENERATED ALWAYS AS IDENTITY,
    failed_at        timestamptz,
    payload_schema   text,
    CONSTRAINT outbox_avro_idempotency UNIQUE (aggregatetype, idempotency_key)
);
CREATE INDEX outbox_avro_unpublished ON outbox_avro (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_avro_aggregate_unpublished ON outbox_avro (aggregatetype, aggregateid, seq)
    WHERE published_at IS NULL;
CREATE TRIGGER relay_outbox_avro_notify AFTER INSERT ON outbox_avro
    FOR EACH STATEMENT EXECUTE FUNCTION relay_outbox_notify();
