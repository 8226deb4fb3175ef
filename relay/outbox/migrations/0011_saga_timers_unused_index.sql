-- saga_timers is read by fire_at (due timers) and written and deleted by timer_id; nothing reads
-- it by run_id. Each step's timeout timer is inserted and deleted once per step, so the unused
-- index cost two index updates per step.
DROP INDEX IF EXISTS saga_timers_run;
