"""The policy gate on the real stack: the order saga and a copy of the incident triage under one
per-test id, as two `relay worker` apps (``tests.support.saga_gate:make_coordinator`` /
``...:make_participants``, SAGA_WF=<id>). The coordinator takes its policy from
RELAY_SAGA_POLICY, as a deployment would. Topics: <id>.charge ... (order), <id>.sre.* (triage,
workflow <id>_triage)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psycopg

from relay import Consumer, Settings
from relay.examples import incident_triage
from relay.examples.order_saga import STEPS, add_order_participants, order_workflow
from relay.headers import event_topic
from relay.saga.coordinator import SagaCoordinator
from relay.topics import apply_topics
from tests.support.saga_app import prepare

__all__ = ["STEPS", "prepare", "topics", "make_coordinator", "make_participants", "gated_workers", "relay", "status_of",
           "wait_status"]


def topics(wf: str) -> list[str]:
    """The aggregate types both workflows use."""
    return [f"saga.{wf}", f"saga.{wf}_triage", *(f"{wf}.{s}" for s in STEPS),
            *(f"{wf}.sre.{j}" for j in ("classify", "logs", "metrics", "rollback"))]


def make_coordinator(settings: Settings) -> Consumer:
    wf = os.environ["SAGA_WF"]
    workflows = [order_workflow(wf), incident_triage.workflow(f"{wf}_triage", f"{wf}.sre")]
    return SagaCoordinator(workflows, name=f"relay-saga-{wf}").consumer


def make_participants(settings: Settings) -> Consumer:
    wf = os.environ["SAGA_WF"]
    consumer = add_order_participants(Consumer(f"relay-saga-participants-{wf}"), wf)
    return incident_triage.add_participants(consumer, f"{wf}_triage", f"{wf}.sre")


# -- driving them from a test ----------------------------------------------------------------

def gated_workers(settings, wf, unique, policy, *, app="tests.support.saga_gate", aggregates=None):
    """(coordinator, participants) of ``app``'s workflows (make_coordinator, make_participants,
    prepare; SAGA_WF=``wf``) under ``policy``, started."""
    import importlib

    from tests.support.workers import Workers

    apply_topics(settings, [event_topic(t) for t in (aggregates or topics(wf))])
    importlib.import_module(app).prepare(settings.dsn)
    env = {"SAGA_WF": wf}
    coordinator = Workers(settings, f"{app}:make_coordinator", f"gate-coord-{unique}",
                          env={**env, "RELAY_SAGA_POLICY": str(policy)})
    participants = Workers(settings, f"{app}:make_participants", f"gate-part-{unique}", env=env)
    coordinator.start()
    participants.start()
    return coordinator, participants


def relay(settings, *args, check=True):
    out = subprocess.run([sys.executable, "-m", "relay", *args], capture_output=True, text=True, timeout=60)
    assert not check or out.returncode == 0, out.stdout + out.stderr
    return out


def status_of(dsn, run_id):
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT status, state FROM saga_runs WHERE run_id = %s", (run_id,)).fetchone()
    return (row[0], row[1]) if row else (None, None)


def wait_status(dsn, run_id, wanted, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status, state = status_of(dsn, run_id)
        if status == wanted:
            return state
        time.sleep(0.2)
    raise AssertionError(f"run {run_id}: {status_of(dsn, run_id)[0]}, expected {wanted}")
