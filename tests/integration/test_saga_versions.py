"""A definition changed while runs are in flight: they finish on the version they started with,
new runs use the new one (each run pinned to its definition hash)."""

import time

import psycopg
import pytest

from relay.saga.start import start
from tests.support.saga_app import order_workflow
from tests.support.saga_checks import order_saga_workers

pytestmark = pytest.mark.integration
EACH = 10


def _wait(dsn: str, wf: str, count: int, states: tuple[str, ...], timeout_s: float = 120) -> dict[str, tuple]:
    deadline = time.monotonic() + timeout_s
    while True:
        with psycopg.connect(dsn) as conn:
            rows = {r[0]: r[1:] for r in conn.execute(
                "SELECT run_id, status, definition_hash FROM saga_runs WHERE workflow = %s", (wf,)).fetchall()}
        if len(rows) == count and all(r[0] in states for r in rows.values()):
            return rows
        assert time.monotonic() < deadline, f"runs: {rows}"
        time.sleep(0.5)


def test_runs_in_flight_finish_on_their_version(stack, settings, unique):
    wf = f"ver{unique}"
    v1, v2 = order_workflow(wf, version=1).hash, order_workflow(wf, version=2).hash
    coord, parts = order_saga_workers(settings, wf, unique, SAGA_VERSION="1")
    try:
        coord.start()  # no participants yet: the runs wait at their first step, on version 1
        with psycopg.connect(settings.dsn) as conn:
            old = [start(conn, wf, input={"amount": i, "fail": False}, idempotency_key=f"a{i}") for i in range(EACH)]
            conn.commit()
        _wait(settings.dsn, wf, EACH, ("running",))
        coord.stop()
        coord.env["SAGA_VERSION"] = "2"  # the changed definition is deployed
        coord.start()
        parts.start()
        with psycopg.connect(settings.dsn) as conn:
            new = [start(conn, wf, input={"amount": i, "fail": False}, idempotency_key=f"b{i}") for i in range(EACH)]
            conn.commit()
        runs = _wait(settings.dsn, wf, 2 * EACH, ("completed",))
        with psycopg.connect(settings.dsn) as conn:
            notified = {r[0] for r in conn.execute(
                "SELECT run_id FROM demo_saga_effects WHERE workflow = %s AND kind = 'notify'", (wf,)).fetchall()}
    finally:
        coord.stop()
        parts.stop()
    assert {runs[r][1] for r in old} == {v1} and {runs[r][1] for r in new} == {v2}
    assert notified == set(new), "only runs started on version 2 have its notify step"
