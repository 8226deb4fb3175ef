"""The order saga on the real stack: starts written in business transactions, a coordinator and
participants as workers; failing runs compensate last-first, every effect exactly once."""


import psycopg
import pytest

from relay.errors import IdempotencyConflict
from relay.saga.start import start
from tests.support.saga_checks import check_order_runs, order_saga_workers, wait_ended

pytestmark = pytest.mark.integration
RUNS, FAILING_EVERY = 40, 5


def test_order_saga_completes_or_compensates_with_every_effect_once(stack, settings, unique):
    wf = f"ord{unique}"
    coordinator, participants = order_saga_workers(settings, wf, unique)
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
        status = wait_ended(settings.dsn, wf, RUNS, 180)
    finally:
        coordinator.stop()
        participants.stop()
    check_order_runs(settings.dsn, wf, runs, status, FAILING_EVERY, coordinator.log())
