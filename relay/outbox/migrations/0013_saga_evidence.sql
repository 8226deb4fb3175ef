-- A saga run's evidence (relay.saga.evidence): its timeline entries as a hash chain, each row
-- holding the previous row's hash, written in the coordinator's transaction with the run's state.
-- Chain heads also go to the compacted topic outbox.event.saga-evidence (relay saga verify).
CREATE TABLE IF NOT EXISTS saga_evidence (
    run_id  text    NOT NULL,
    seq     integer NOT NULL,
    prev    text    NOT NULL,
    hash    text    NOT NULL,
    entry   jsonb   NOT NULL,
    PRIMARY KEY (run_id, seq));
