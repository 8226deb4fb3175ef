"""Sagas through SIGKILLs: the coordinator killed every few seconds (and a participant once)
while 200 order sagas run; every run ends where it should, every effect happens exactly once."""

import time

import psycopg
import pytest

from relay.saga.start import start
from tests.support.saga_checks import check_order_runs, order_saga_workers, wait_ended

pytestmark = pytest.mark.integration
RUNS, FAILING_EVERY, KILLS = 200, 5, 4


def test_coordinator_and_participant_kills_lose_and_repeat_nothing(stack, settings, unique):
    wf = f"kill{unique}"
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
                if i % 50 == 25:  # kills while starts, commands and replies are in flight
                    coordinator.kill()
                    coordinator.start()
        for k in range(KILLS):
            time.sleep(2)
            coordinator.kill()
            if k == 1:
                participants.kill()
                participants.start()
            coordinator.start()
        status = wait_ended(settings.dsn, wf, RUNS, 240)
    finally:
        coordinator.stop()
        participants.stop()
    check_order_runs(settings.dsn, wf, runs, status, FAILING_EVERY, coordinator.log())
