"""max_parallel and the for_each cap on the real stack, measured outside the engine: from the
outbox (when the coordinator's transactions wrote each command) and the inbox (when they
claimed each reply), the commands a run had in flight never exceed max_parallel, and reach it.
A for_each over its cap fails the run before any command is written."""

import psycopg
import pytest

from relay.headers import event_topic
from relay.saga.start import start
from relay.topics import apply_topics
from tests.support.saga_checks import wait_ended
from tests.support.saga_fanout import CAP, ITEMS_PARALLEL, SCANS_PARALLEL
from tests.support.workers import Workers

pytestmark = pytest.mark.integration
RUNS, ITEMS = 10, 8

# per coordinator transaction that wrote commands (created_at = its now()): the run's commands
# written up to then minus its replies the coordinator had claimed up to then (processed_at = now())
IN_FLIGHT = """
WITH cmd AS (SELECT aggregateid AS run, created_at AS at, payload->>'step' AS step FROM outbox
             WHERE aggregateid = ANY(%(runs)s) AND type = 'SagaCommand'),
     rep AS (SELECT o.aggregateid AS run, p.processed_at AS at FROM outbox o
             JOIN processed_events p ON p.event_id = o.id AND p.consumer = %(consumer)s
             WHERE o.aggregateid = ANY(%(runs)s) AND o.type = 'SagaReply')
SELECT c.run, c.at, split_part(c.step, '[', 1) IN ('a', 'b', 'c', 'd') AS scans,
       (SELECT count(*) FROM cmd c2 WHERE c2.run = c.run AND c2.at <= c.at)
     - (SELECT count(*) FROM rep r WHERE r.run = c.run AND r.at <= c.at) AS in_flight
FROM cmd c
"""


def test_max_parallel_holds_in_flight_and_an_over_cap_for_each_sends_nothing(stack, settings, unique):
    wf = f"fan{unique}"
    apply_topics(settings, [event_topic(t) for t in (f"saga.{wf}", f"{wf}.item", f"{wf}.scan")])
    env = {"SAGA_WF": wf}
    coordinator = Workers(settings, "tests.support.saga_fanout:make_coordinator", f"fan-coord-{unique}", env=env)
    participants = Workers(settings, "tests.support.saga_fanout:make_participants", f"fan-part-{unique}", env=env)
    coordinator.start()
    participants.start()
    try:
        runs = []
        with psycopg.connect(settings.dsn) as conn:
            for i in range(RUNS):
                with conn.transaction():
                    runs.append(start(conn, wf, input={"items": list(range(ITEMS))}, idempotency_key=f"r{i}"))
            with conn.transaction():
                over = start(conn, wf, input={"items": list(range(CAP + 1))}, idempotency_key="over-cap")
        status = wait_ended(settings.dsn, wf, RUNS + 1, 120)
    finally:
        coordinator.stop()
        participants.stop()
    assert [status.get(r) for r in runs] == ["completed"] * RUNS, coordinator.log()[-3000:]
    assert status.get(over) == "failed"
    with psycopg.connect(settings.dsn) as conn:
        rows = conn.execute(IN_FLIGHT, {"runs": runs, "consumer": f"relay-saga-{wf}"}).fetchall()
        sent_over_cap = conn.execute("SELECT count(*) FROM outbox WHERE aggregateid = %s AND type = 'SagaCommand'",
                                     (over,)).fetchone()[0]
        reason = conn.execute("SELECT state->>'reason' FROM saga_runs WHERE run_id = %s", (over,)).fetchone()[0]
    assert len(rows) == RUNS * (ITEMS + 4)
    items = [n for _run, _at, scans, n in rows if not scans]
    scans = [n for _run, _at, scans, n in rows if scans]
    assert max(items) == ITEMS_PARALLEL and max(scans) == SCANS_PARALLEL, (max(items), max(scans))
    assert sent_over_cap == 0 and str(CAP) in (reason or ""), reason
