"""A rebalance during compensation: two coordinators share the saga topic's partitions; 300 order
sagas that all fail at shipping are compensating when one coordinator is SIGKILLed, and its
partitions (with the rollbacks half done on them) move to the other after its session timeout.
A rollback must never run twice nor be missed: every run ends compensated with one release and
one refund, in that order (the effects table has no unique constraint, so a compensation that ran
twice would show)."""

import time

import psycopg
import pytest

from relay.saga.start import start
from tests.support.saga_checks import check_order_runs, order_saga_workers, wait_ended

pytestmark = pytest.mark.integration
RUNS = 300


def _compensating(dsn: str, wf: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM saga_runs WHERE workflow = %s AND status = 'compensating'",
                           (wf,)).fetchone()
    return row[0] if row else 0


def test_partitions_moving_during_compensation_undo_each_step_once(stack, settings, unique):
    wf = f"rebal{unique}"
    coordinators, participants = order_saga_workers(settings, wf, unique)
    coordinators.start(0)
    coordinators.start(1)
    participants.start()
    try:
        _wait_for(lambda: all("assigned" in coordinators.log(n) for n in (0, 1)), 60,
                  lambda: coordinators.log(0)[-2000:] + coordinators.log(1)[-2000:])
        runs = {}
        with psycopg.connect(settings.dsn) as conn:
            for i in range(RUNS):
                with conn.transaction():
                    runs[start(conn, wf, input={"amount": i, "fail": True}, idempotency_key=f"o{i}")] = i
        _wait_for(lambda: _compensating(settings.dsn, wf) >= 20, 60, lambda: coordinators.log(0)[-3000:])
        coordinators.kill(0)  # its partitions, with rollbacks half done, move to coordinator 1
        stalled = _compensating(settings.dsn, wf)
        status = wait_ended(settings.dsn, wf, RUNS, 240)
    finally:
        coordinators.stop()
        participants.stop()
    check_order_runs(settings.dsn, wf, runs, status, 1, coordinators.log(0) + coordinators.log(1))
    assert stalled > 0
    assert coordinators.log(1).count("assigned") >= 2, "coordinator 1 never took the killed one's partitions over"
    print(f"runs compensating when coordinator 0 was killed: {stalled}")


def _wait_for(condition, timeout_s: float, details) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, details()
        time.sleep(0.05)
