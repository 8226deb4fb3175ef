-- The outbox table (Debezium EventRouter's default columns plus ours) and the
-- publication Debezium reads it through. Debezium itself never writes here.
CREATE TABLE outbox (
    id               uuid        PRIMARY KEY,
    aggregatetype    text        NOT NULL CHECK (aggregatetype ~ '^[A-Za-z0-9._-]{1,200}$'),
    aggregateid      text        NOT NULL CHECK (aggregateid <> ''),
    type             text        NOT NULL CHECK (type <> ''),
    payload          jsonb,
    idempotency_key  text,
    request_hash     text,
    headers          jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    published_at     timestamptz,
    publish_attempts integer     NOT NULL DEFAULT 0,
    last_error       text,
    CONSTRAINT outbox_idempotency UNIQUE (aggregatetype, idempotency_key)
);

-- the polling relay and lag metrics read unpublished rows oldest first
CREATE INDEX outbox_unpublished ON outbox (created_at) WHERE published_at IS NULL;
