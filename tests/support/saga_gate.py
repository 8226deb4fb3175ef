"""The policy gate on the real stack: the order saga and a copy of the incident triage under one
per-test id, as two `relay worker` apps (``tests.support.saga_gate:make_coordinator`` /
``...:make_participants``, SAGA_WF=<id>). The coordinator takes its policy from
RELAY_SAGA_POLICY, as a deployment would. Topics: <id>.charge ... (order), <id>.sre.* (triage,
workflow <id>_triage)."""

from __future__ import annotations

import os

from relay import Consumer, Settings
from relay.examples import incident_triage
from relay.examples.order_saga import STEPS, add_order_participants, order_workflow
from relay.saga.coordinator import SagaCoordinator

__all__ = ["STEPS", "topics", "make_coordinator", "make_participants"]


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
