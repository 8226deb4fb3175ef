-- The policy gate's throttle buckets (relay.saga.gating): one row per bucket (rule id + key value),
-- shared by every run and coordinator. tat is the bucket's theoretical arrival time in epoch
-- seconds (GCRA, relay.policy.bucket): a reservation takes the next slot and moves it on, in the
-- coordinator's transaction, so a rolled-back batch gives its slots back.
CREATE TABLE IF NOT EXISTS saga_buckets (
    bucket      text             PRIMARY KEY,
    tat         double precision NOT NULL,
    updated_at  timestamptz      NOT NULL DEFAULT now());
