"""Scenario 8, sagas: the demo's order saga (charge -> reserve -> ship, none failing) through the
real pipeline, a coordinator and a participants worker (relay.demo_saga.SagaWorkers).

- the maximum: ``runs`` sagas started at full speed; completed sagas/s = runs / (the last run's
  end - the first start), every run must complete;
- the gate's cost: the same maximum with the coordinator restarted under a policy (a few rules,
  all letting the order saga through, the default deny) and evidence on (chains and heads),
  alternating with the gate off, repetition by repetition;
- the latency: sagas started open-loop at a fraction of that maximum for ``seconds``; per step,
  the time from the coordinator deciding to send its command to the coordinator deciding on its
  reply (both on the run's timeline, one clock): a command's trip through the outbox, Debezium,
  Kafka, the participant's inbox transaction, its reply's trip back, and the coordinator's batch.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import psycopg

from relay.bench import pipeline
from relay.config import Settings
from relay.demo import wait_until
from relay.demo_saga import SagaWorkers, prepare_saga_pipeline
from relay.demo_saga_verdict import step_latencies_ms, unfinished
from relay.examples import order_saga
from relay.saga.start import start

WRITERS = 4
STEPS = 3
# ~12 s at full speed: on a just-started stack the first 3,000-run repetition after a 1,000-run
# warm-up was ~10 % slower than later ones (Kafka's and Connect's JIT compilers still at work)
WARM_UP_RUNS = 3000
# about the maximum measured here (2 cores), so that a repetition lasts about ``seconds``: a burst
# also pays a fixed fill and drain (the first run's latency), which shorter bursts over-weight
RATE_GUESS = 200
GATE_WARM_UP_RUNS = 1000  # after each coordinator restart
# what a deployment would write: limits first, the workflow allowed, everything else denied
GATE_POLICY = f"""
version: v1
default: deny
rules:
  - id: no-huge-charges
    when: {{topic: {order_saga.ORDER_SAGA}.charge, amount: {{gt: 1000000}}}}
    decision: deny
  - id: big-charges
    when: {{topic: {order_saga.ORDER_SAGA}.charge, amount: {{gt: 100000}}}}
    decision: require_approval
  - id: prod-writes-without-undo
    when: {{env: production, side_effect: true, compensation_declared: false}}
    decision: require_human
  - id: order-saga
    when: {{workflow: {order_saga.ORDER_SAGA}}}
    decision: allow
"""


def start_runs(dsn: str, tag: str, *, writers: int, runs: int | None = None, rate: float | None = None,
               seconds: float | None = None) -> list[str]:
    """Start order sagas (none failing), one per transaction: see :func:`relay.bench.pipeline.paced`."""
    def one(conn: psycopg.Connection[Any], w: int, i: int) -> str:
        return start(conn, order_saga.ORDER_SAGA, input={"amount": i, "fail": False}, idempotency_key=f"{tag}-{w}-{i}")

    return pipeline.paced(dsn, one, writers=writers, count=runs, rate=rate, seconds=seconds)[0]


def _ended(dsn: str, runs: list[str], timeout_s: float) -> dict[str, Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            # once a second: the check reads every run of the burst (~13 ms of Postgres for 3,000), and
            # the end time comes from the runs' updated_at, not from when the check saw it
            wait_until(lambda: unfinished(conn, runs) == 0, timeout_s, "the benchmark's saga runs to end", poll_s=1.0)
        except Exception:  # noqa: BLE001 - what did not end is counted below
            pass
        rows = conn.execute("SELECT status, state, extract(epoch FROM updated_at) FROM saga_runs"
                            " WHERE run_id = ANY(%s)", (runs,)).fetchall()
    completed = [state for status, state, _ in rows if status == "completed"]
    last = max((float(at) for _, _, at in rows), default=0.0)
    return {"completed": len(completed), "states": completed, "last_end": last}


def max_rate(settings: Settings, runs: int, timeout_s: float) -> dict[str, Any]:
    t0 = time.time()
    ids = start_runs(settings.dsn, f"benchsaga-max-{uuid.uuid4().hex[:6]}", writers=WRITERS, runs=runs)
    started_s = time.time() - t0
    ended = _ended(settings.dsn, ids, timeout_s)
    span = max(ended["last_end"] - t0, 1e-3)
    return {"runs": len(ids), "completed": ended["completed"], "sagas_per_s": ended["completed"] / span,
            "start_rate": len(ids) / max(started_s, 1e-3), "seconds": round(span, 2)}


def paced(settings: Settings, rate: float, seconds: float, timeout_s: float) -> dict[str, Any]:
    t0 = time.time()
    ids = start_runs(settings.dsn, f"benchsaga-lat-{uuid.uuid4().hex[:6]}", writers=WRITERS, rate=rate,
                     seconds=seconds)
    achieved = len(ids) / max(time.time() - t0, 1e-3)
    ended = _ended(settings.dsn, ids, timeout_s)
    lat = pipeline.percentiles(step_latencies_ms(ended["states"]))
    return {"runs": len(ids), "completed": ended["completed"], "start_rate": achieved, "step_p50_ms": lat["p50"],
            "step_p99_ms": lat["p99"], "steps": lat["n"]}


def saga_runs(settings: Settings, *, seconds: float, reps: int, say: Callable[[str], None],
              load: float = 0.5) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(max-rate rows, the same with the gate and evidence on, rows at ``load`` of the median
    maximum), the workers started and stopped here."""
    prepare_saga_pipeline(settings, say)
    workers = SagaWorkers(settings)
    workers.start_all()
    policy = Path(tempfile.mkdtemp(prefix="relay-bench-gate-")) / "policy.yaml"
    policy.write_text(GATE_POLICY)
    try:
        # warm-up: the workers' first assignments and caches, and the JITs of a just-started Kafka
        # and Connect (their compiler threads stay busy for about the first minute)
        max_rate(settings, WARM_UP_RUNS, 120)
        runs = int(max(1000, RATE_GUESS * seconds))
        tops, gated = [], []
        for rep in range(1, reps + 1):
            tops.append(max_rate(settings, runs, 300))
            say(f"[sagas] max repetition {rep}/{reps}: {tops[-1]['sagas_per_s']:,.0f} sagas/s "
                f"({tops[-1]['completed']}/{tops[-1]['runs']} completed in {tops[-1]['seconds']} s)")
            gated.append(_gated(settings, workers, policy, runs))
            say(f"[sagas] gate + evidence on, repetition {rep}/{reps}: {gated[-1]['sagas_per_s']:,.0f} sagas/s "
                f"({gated[-1]['completed']}/{gated[-1]['runs']} completed in {gated[-1]['seconds']} s)")
        top = sorted(r["sagas_per_s"] for r in tops)[len(tops) // 2]
        at = []
        for rep in range(1, reps + 1):
            at.append(paced(settings, load * top, seconds, 300))
            say(f"[sagas] {load:.0%} of max ({load * top:,.0f}/s) repetition {rep}/{reps}: step p50 "
                f"{at[-1]['step_p50_ms']:.0f} ms, p99 {at[-1]['step_p99_ms']:.0f} ms "
                f"({at[-1]['completed']}/{at[-1]['runs']} completed)")
        return tops, gated, at
    finally:
        workers.stop_all()


def _gated(settings: Settings, workers: SagaWorkers, policy: Path, runs: int) -> dict[str, Any]:
    """One maximum with the coordinator under ``policy`` (evidence on), then back to no gate; each
    restart is followed by a warm-up, so both sides are measured on a warm coordinator."""
    workers.restart("coordinator", {"RELAY_SAGA_POLICY": str(policy), "RELAY_SAGA_EVIDENCE": "on"})
    max_rate(settings, GATE_WARM_UP_RUNS, 120)
    try:
        return max_rate(settings, runs, 300)
    finally:
        workers.restart("coordinator", {})
        max_rate(settings, GATE_WARM_UP_RUNS, 120)
