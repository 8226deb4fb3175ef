-- What the polling relay (`relay outbox poll`) needs; the CDC relay ignores all of it.
-- seq: insertion order. Per aggregate it is commit order when writes to one aggregate are
-- serialised (they are when the business row is locked or updated in the same transaction).
ALTER TABLE outbox ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
-- failed_at: the row failed poller_max_attempts times; it and later rows of its aggregate wait
-- for an operator (per-aggregate order is never broken to get past it).
ALTER TABLE outbox ADD COLUMN failed_at timestamptz;

DROP INDEX outbox_unpublished;
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_aggregate_unpublished ON outbox (aggregatetype, aggregateid, seq) WHERE published_at IS NULL;

-- wake pollers at commit time (NOTIFY is delivered on commit, once per statement)
CREATE FUNCTION relay_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('relay_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER relay_outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION relay_outbox_notify();
