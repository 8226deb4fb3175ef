-- Saga coordinators (relay.saga). A run's row is written in the transaction that claims the event
-- that moved it (the Postgres inbox) and that writes the commands it sent (the outbox): state and
-- commands commit together, so no crash can leave one without the other.
-- Definitions are kept by content hash: a run is pinned to the version it started with, and a
-- changed definition is a new row, never an edit (runs in flight finish on their version).
CREATE TABLE IF NOT EXISTS saga_definitions (
    hash           text        PRIMARY KEY,
    workflow       text        NOT NULL,
    definition     jsonb       NOT NULL,
    registered_at  timestamptz NOT NULL DEFAULT now());
CREATE INDEX IF NOT EXISTS saga_definitions_workflow ON saga_definitions (workflow, registered_at);

CREATE TABLE IF NOT EXISTS saga_runs (
    run_id           text        PRIMARY KEY,
    workflow         text        NOT NULL,
    definition_hash  text        NOT NULL REFERENCES saga_definitions (hash),
    status           text        NOT NULL,
    business_key     text,
    state            jsonb       NOT NULL,
    started_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    version          bigint      NOT NULL DEFAULT 1);
CREATE INDEX IF NOT EXISTS saga_runs_status ON saga_runs (status, updated_at);
CREATE INDEX IF NOT EXISTS saga_runs_business_key ON saga_runs (business_key) WHERE business_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS saga_runs_workflow ON saga_runs (workflow, started_at);

-- Durable timers (retry backoff, step timeouts, delays, approval expiry, deadlines, rollback
-- windows): a due timer is deleted and turned into a SagaTimer event for its run in one
-- transaction, so a killed coordinator's timers fire late, but fire.
CREATE TABLE IF NOT EXISTS saga_timers (
    timer_id  text        PRIMARY KEY,
    run_id    text        NOT NULL,
    workflow  text        NOT NULL,
    fire_at   timestamptz NOT NULL);
CREATE INDEX IF NOT EXISTS saga_timers_due ON saga_timers (fire_at);
CREATE INDEX IF NOT EXISTS saga_timers_run ON saga_timers (run_id);
