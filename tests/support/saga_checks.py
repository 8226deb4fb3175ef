"""Waiting for saga runs to end and checking their effects (the order saga of saga_app)."""

from __future__ import annotations

import time
from collections import Counter

import psycopg

from relay.demo_saga_verdict import ORDER_OK, ORDER_UNDONE
from relay.saga.state import TERMINAL

DONE = {s.value for s in TERMINAL}  # every state a run ends in


def wait_ended(dsn: str, wf: str, count: int, timeout_s: float) -> dict[str, str]:
    """run id -> status once ``count`` runs of ``wf`` ended (or what there is at the deadline)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with psycopg.connect(dsn) as conn:
            status = dict(conn.execute("SELECT run_id, status FROM saga_runs WHERE workflow = %s", (wf,)).fetchall())
        if (len(status) == count and all(s in DONE for s in status.values())) or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


def check_order_runs(dsn: str, wf: str, runs: dict[str, int], status: dict[str, str], failing_every: int,
                     log: str) -> None:
    """Every run ended where it should; its effects are exactly the expected ones, each once."""
    n = len(runs)
    expected = Counter({"completed": n - n // failing_every, "compensated": n // failing_every})
    assert Counter(status.values()) == expected, log[-3000:]
    with psycopg.connect(dsn) as conn:
        effects = conn.execute("SELECT run_id, kind FROM demo_saga_effects WHERE workflow = %s ORDER BY n",
                               (wf,)).fetchall()
    by_run: dict[str, list[str]] = {}
    for run_id, kind in effects:
        by_run.setdefault(run_id, []).append(kind)
    for run_id, i in runs.items():
        failing = i % failing_every == 0
        expected = ORDER_UNDONE if failing else ORDER_OK
        assert by_run.get(run_id) == expected, f"run {run_id} (order {i}): effects {by_run.get(run_id)}"


def order_saga_workers(settings, wf: str, unique: str, **coordinator_env: str):
    """(coordinator, participants) of the order saga ``wf``, not started; its topics and the
    effects table exist."""
    from relay.headers import event_topic
    from relay.topics import apply_topics
    from tests.support.saga_app import STEPS, prepare
    from tests.support.workers import Workers

    apply_topics(settings, [event_topic(t) for t in (f"saga.{wf}", *(f"{wf}.{s}" for s in STEPS))])
    prepare(settings.dsn)
    env = {"SAGA_WF": wf}
    return (Workers(settings, "tests.support.saga_app:make_coordinator", f"saga-coord-{unique}",
                    env={**env, **coordinator_env}),
            Workers(settings, "tests.support.saga_app:make_participants", f"saga-part-{unique}", env=env))
