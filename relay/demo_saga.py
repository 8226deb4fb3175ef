"""`relay demo --saga`: the order saga and the incident-triage workflow end to end, with their proof.

1. ensure the outbox schema, the effects table, the topics and the connector (all idempotent);
2. start the coordinator and the participants (``relay worker relay.examples.order_saga:...``) as
   child processes; wait until a probe saga has completed;
3. W writer connections start N order sagas, each in its own transaction (a fraction marked to
   fail at shipping), and M incident triages: half approved in the transaction that starts them
   (before the run reaches its gate: an early approval), the rest decided at the gate (every
   fourth denied);
4. with ``kill_every_s``, the coordinator is SIGKILLed and restarted every so many seconds until
   every run has ended, and the participants once;
5. verdict (relay.demo_saga_verdict): every run ended where it should, every effect happened
   exactly once (refund and release once per failed order, never for the others), the retries
   that wait for a durable backoff timer happened. Exit status 0 only then.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg

from relay.config import Settings
from relay.demo import Say, prepare_pipeline, wait_until
from relay.demo_saga_verdict import SagaDemoSummary, unfinished, verdict
from relay.examples import incident_triage, order_saga as orders
from relay.headers import event_topic
from relay.saga import ops, wire
from relay.saga.start import start
from relay.stack.process import ManagedProcess

APP = "relay.examples.order_saga"
PROBE_TIMEOUT_S = 120.0
LATE_DECIDER_POLL_S = 0.2


def failing(i: int, fraction: float) -> bool:
    """Exactly round(n * fraction) of orders 0..n-1 fail, spread evenly."""
    return int((i + 1) * fraction) > int(i * fraction)


def incident_plan(i: int) -> str:
    """"early" (approved when started), "late" (approved at the gate) or "deny" (denied at it)."""
    return "early" if i % 2 == 0 else ("deny" if i % 4 == 1 else "late")


def prepare_saga_pipeline(settings: Settings, say: Say) -> None:
    """The outbox schema, the effects table, the workflows' topics and the connector (idempotent)."""
    aggregates = [wire.saga_aggregate(orders.ORDER_SAGA), wire.saga_aggregate(incident_triage.WORKFLOW_ID),
                  *orders.step_topics(), *incident_triage.TOPICS, wire.FINISHED_AGGREGATE, wire.APPROVALS_AGGREGATE]
    prepare_pipeline(settings, say, [event_topic(a) for a in aggregates], orders.ensure_schema)


class SagaWorkers:
    """The coordinator and the participants, as child processes we can SIGKILL and restart."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        files = settings.stack_dir
        self.procs = {role: ManagedProcess(f"worker-saga-{role}", files / "pids" / f"worker-saga-{role}.pid",
                                           files / "logs" / f"worker-saga-{role}.log")
                      for role in ("coordinator", "participants")}
        self.kills = {role: 0 for role in self.procs}
        self.env: dict[str, dict[str, str]] = {role: {} for role in self.procs}  # more environment, per role

    def start(self, role: str) -> None:
        proc = self.procs[role]
        env = {**os.environ, "RELAY_WORKER_METRICS_PORT": "0", "RELAY_CONSUMER_ENGINE": "kafka",
               "RELAY_CONSUMER_INSTANCE_ID": f"demo-saga-{role}-0",  # a restart takes its partitions back at once
               "RELAY_WORKER_DATA_DIR": str(self.settings.stack_dir / "faust" / f"demo-saga-{role}"),
               **self.env[role]}
        proc.start([sys.executable, "-m", "relay", "worker", f"{APP}:{role}"], env=env)

    def start_all(self) -> None:
        for role, proc in self.procs.items():
            proc.stop()  # left by an interrupted demo
            self.start(role)

    def kill(self, role: str) -> None:
        """SIGKILL (no shutdown, no final commit), then start it again."""
        pid = self.procs[role].pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            self.procs[role].stop(grace_s=5)  # reaps it and drops the pid file
            self.kills[role] += 1
        self.start(role)

    def restart(self, role: str, env: dict[str, str]) -> None:
        """Stop ``role`` cleanly and start it again with ``env`` added (a coordinator with a policy)."""
        self.procs[role].stop(sig=signal.SIGTERM, grace_s=20)
        self.env[role] = dict(env)
        self.start(role)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.stop(sig=signal.SIGTERM, grace_s=20)


class Chaos(threading.Thread):
    """SIGKILLs the coordinator every ``every_s`` seconds (the participants at the second kill)."""

    def __init__(self, workers: SagaWorkers, every_s: float) -> None:
        super().__init__(daemon=True)
        self.workers, self.every_s, self.stopping = workers, every_s, threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stopping.wait(self.every_s):
            self.workers.kill("coordinator")
            n += 1
            if n == 2:
                self.workers.kill("participants")


class LateDecider(threading.Thread):
    """Approves (or denies) the "late" incidents once they wait at their gate."""

    def __init__(self, settings: Settings, plans: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.settings, self.stopping = settings, threading.Event()
        self.pending = {run: plan for run, plan in plans.items() if plan != "early"}

    def run(self) -> None:
        with psycopg.connect(self.settings.dsn, autocommit=True) as conn:
            while self.pending and not self.stopping.wait(LATE_DECIDER_POLL_S):
                waiting = [r for (r,) in conn.execute(
                    "SELECT run_id FROM saga_runs WHERE run_id = ANY(%s) AND status = 'awaiting_approval'",
                    (list(self.pending),)).fetchall()]
                for run in waiting:
                    with conn.transaction():
                        ops.decide_approval(conn, run, incident_triage.APPROVAL_STEP,
                                            approved=self.pending.pop(run) == "late", by="demo-oncall",
                                            reason="diagnostics reviewed")


def _start_orders(settings: Settings, tag: str, n: int, fraction: float, writers: int) -> tuple[dict[str, bool], float]:
    """Start ``n`` order sagas from ``writers`` connections: run id -> fails at shipping; seconds."""
    def write_chunk(idx: list[int]) -> dict[str, bool]:
        out = {}
        with psycopg.connect(settings.dsn) as conn:
            for i in idx:
                with conn.transaction():
                    fail = failing(i, fraction)
                    run = start(conn, orders.ORDER_SAGA, input={"amount": 100 + i, "fail": fail},
                                idempotency_key=f"{tag}-o{i}", business_key=f"{tag}-order-{i}")
                out[run] = fail
        return out

    t0 = time.monotonic()
    runs: dict[str, bool] = {}
    with ThreadPoolExecutor(writers) as pool:
        for part in pool.map(write_chunk, [list(range(n))[w::writers] for w in range(writers)]):
            runs.update(part)
    return runs, time.monotonic() - t0


def _start_incidents(settings: Settings, tag: str, n: int) -> dict[str, str]:
    """Start ``n`` incident triages; the "early" ones approved in the starting transaction."""
    plans = {}
    with psycopg.connect(settings.dsn) as conn:
        for i in range(n):
            with conn.transaction():
                run = start(conn, incident_triage.WORKFLOW_ID,
                            input={"incident_id": f"INC-{tag}-{i}", "summary": "checkout p95 latency up 4x"},
                            idempotency_key=f"{tag}-inc{i}", business_key=f"{tag}-INC-{i}")
                plans[run] = incident_plan(i)
                if plans[run] == "early":
                    ops.decide_approval(conn, run, incident_triage.APPROVAL_STEP, approved=True, by="demo-oncall",
                                        reason="pre-approved runbook", workflow=incident_triage.WORKFLOW_ID)
    return plans


def run_saga_demo(settings: Settings, *, orders_n: int, failing_fraction: float, incidents: int, writers: int,
                  kill_every_s: float, timeout_s: float, progress: Say) -> Any:
    tag = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    summary = SagaDemoSummary(run_id=tag, orders=orders_n, incidents=incidents, writers=writers,
                              kill_every_s=kill_every_s)
    prepare_saga_pipeline(settings, progress)
    workers = SagaWorkers(settings)
    workers.start_all()
    progress(f"coordinator and participants started (logs {settings.stack_dir / 'logs'}/worker-saga-*.log)")
    chaos: Chaos | None = None
    try:
        with psycopg.connect(settings.dsn, autocommit=True) as conn:
            with conn.transaction():
                probe = start(conn, orders.ORDER_SAGA, input={"amount": 0, "fail": False},
                              idempotency_key=f"probe-{tag}", business_key=f"probe-{tag}")
            summary.pipeline_ready_s = wait_until(lambda: unfinished(conn, [probe]) == 0, PROBE_TIMEOUT_S,
                                                  "the probe saga to end", workers.procs["coordinator"], poll_s=0.2)
            progress(f"pipeline live: probe saga ended after {summary.pipeline_ready_s:.1f} s")
            if kill_every_s > 0:
                chaos = Chaos(workers, kill_every_s)
                chaos.start()
                progress(f"chaos: SIGKILL of the coordinator every {kill_every_s:g} s, of the participants once")
            plans = _start_incidents(settings, tag, incidents)
            decider = LateDecider(settings, plans)
            decider.start()
            started_at = time.time()
            runs, summary.start_s = _start_orders(settings, tag, orders_n, failing_fraction, writers)
            progress(f"started {len(runs)} order sagas ({sum(runs.values())} to fail at shipping) from "
                     f"{writers} connections in {summary.start_s:.2f} s, and {len(plans)} incident triages")
            every = [*runs, *plans]
            try:
                wait_until(lambda: unfinished(conn, every) == 0, timeout_s, "every saga run to end", poll_s=0.5)
            except Exception as exc:  # noqa: BLE001 - the verdict counts what is stuck
                progress(str(exc))
            if chaos is not None:
                chaos.stopping.set()
                chaos.join()
            decider.stopping.set()
            decider.join()
            summary.coordinator_kills, summary.participant_kills = workers.kills["coordinator"], \
                workers.kills["participants"]
            verdict(conn, summary, runs, plans, started_at)
    finally:
        if chaos is not None:
            chaos.stopping.set()
            chaos.join()
        workers.stop_all()
        progress("workers stopped")
    return summary
