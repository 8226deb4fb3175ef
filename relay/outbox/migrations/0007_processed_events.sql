-- The Postgres inbox (relay.handling.pg_inbox, `inbox="postgres"` subscriptions): one row per
-- (consumer, event id) handled, inserted in the handler's own transaction so that the claim and
-- the handler's writes commit or roll back together. processed_at drives pruning (rows older
-- than the dedup window are deleted in batches).
-- The same DDL as pg_inbox.DDL, IF NOT EXISTS: a database where pg_inbox.ensure_schema already
-- created the table migrates cleanly. The advisory lock is ensure_schema's (pg_inbox.SCHEMA_LOCK_ID),
-- so this migration and a concurrent ensure_schema do not race on the CREATE.
SELECT pg_advisory_xact_lock(452823510904);
CREATE TABLE IF NOT EXISTS processed_events (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id));
CREATE INDEX IF NOT EXISTS processed_events_processed_at ON processed_events (processed_at);
