-- Side-effect records (relay.saga.effects): one per idempotency key, bound to the hash of the
-- request it was first used for. The coordinator writes the intent (validated, approval_required,
-- approved) with the command's outbox row; the participant moves it to started in a transaction
-- of its own before calling the target, then to committed or failed with its reply, or to
-- ambiguous when the call's outcome is unknown (a reconciler resolves it). history holds each
-- move with its time.
CREATE TABLE IF NOT EXISTS effects (
    idempotency_key  text        PRIMARY KEY,
    request_hash     text        NOT NULL,
    request          jsonb,
    state            text        NOT NULL,
    effect_class     text,
    target           text        NOT NULL,
    run_id           text,
    step             text,
    command_id       text,
    actor            text,
    approval         jsonb,
    external_ref     text,
    result           jsonb,
    error            text,
    retriable        boolean     NOT NULL DEFAULT false,   -- failed, but nothing happened: may be sent again
    attempts         integer     NOT NULL DEFAULT 0,
    history          jsonb       NOT NULL DEFAULT '[]',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now());
CREATE INDEX IF NOT EXISTS effects_state ON effects (state, updated_at);
