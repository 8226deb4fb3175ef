"""The order saga on the real stack: starts written in business transactions, a coordinator and
participants as workers; failing runs compensate last-first, every effect exactly once."""

import time
from collections import Counter

import psycopg
import pytest

from relay.errors import IdempotencyConflict
from relay.headers import event_topic
from relay.saga.start import start
from relay.topics import apply_topics
from tests.support.saga_app import STEPS, prepare
from tests.support.workers import Workers

pytestmark = pytest.mark.integration
RUNS, FAILING_EVERY = 40, 5


def test_order_saga_completes_or_compensates_with_every_effect_once(stack, settings, unique):
    wf = f"ord{unique}"
    apply_topics(settings, [event_topic(t) for t in (f"saga.{wf}", *(f"{wf}.{s}" for s in STEPS))])
    prepare(settings.dsn)
    env = {"SAGA_WF": wf}
    coordinator = Workers(settings, "tests.support.saga_app:make_coordinator", f"saga-coord-{unique}", env=env)
    participants = Workers(settings, "tests.support.saga_app:make_participants", f"saga-part-{unique}", env=env)
    coordinator.start()
    participants.start()
    try:
        runs = {}
        with psycopg.connect(settings.dsn) as conn:
            for i in range(RUNS):
                with conn.transaction():
                    runs[start(conn, wf, input={"amount": i, "fail": i % FAILING_EVERY == 0},
                               idempotency_key=f"o{i}", business_key=f"o{i}")] = i
            with conn.transaction():  # the same key and input again: the same run, nothing written
                assert start(conn, wf, input={"amount": 1, "fail": False}, idempotency_key="o1",
                             business_key="o1") in runs
            with pytest.raises(IdempotencyConflict, match="idempotency key 'o1'"), conn.transaction():
                start(conn, wf, input={"amount": 999, "fail": False}, idempotency_key="o1", business_key="o1")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with psycopg.connect(settings.dsn) as conn:
                status = dict(conn.execute("SELECT run_id, status FROM saga_runs WHERE workflow = %s",
                                           (wf,)).fetchall())
            if len(status) == RUNS and all(s in ("completed", "compensated") for s in status.values()):
                break
            time.sleep(0.5)
        with psycopg.connect(settings.dsn) as conn:
            effects = conn.execute("SELECT run_id, kind FROM saga_effects WHERE workflow = %s ORDER BY n",
                                   (wf,)).fetchall()
    finally:
        coordinator.stop()
        participants.stop()
    assert Counter(status.values()) == {"completed": RUNS - RUNS // FAILING_EVERY,
                                        "compensated": RUNS // FAILING_EVERY}, coordinator.log()[-3000:]
    by_run: dict[str, list[str]] = {}
    for run_id, kind in effects:
        by_run.setdefault(run_id, []).append(kind)
    for run_id, i in runs.items():
        expected = (["charge", "reserve", "release", "refund"] if i % FAILING_EVERY == 0
                    else ["charge", "reserve", "ship"])
        assert by_run.get(run_id) == expected, f"run {run_id} (order {i}): effects {by_run.get(run_id)}"
