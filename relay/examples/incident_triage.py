"""The incident-triage workflow, as the orchestration article writes it (YAML, loaded unchanged),
and demo participants for its jobs.

classify -> (logs_scan, metric_scan in parallel) -> approval_gate -> rollback. The logs scan
fails retriably on its first attempt ("log store busy"), so each run waits for a durable backoff
timer; the rollback's effect is a row in ``demo_saga_effects`` (kind ``rollback``).
"""

from __future__ import annotations

from typing import Any

from relay.consume.consumer import Consumer
from relay.consume.pg import Tx
from relay.errors import StepFailed
from relay.saga.load import load_workflow
from relay.saga.model import Workflow
from relay.saga.participant import Command

WORKFLOW_ID = "incident_triage_parallel"
APPROVAL_STEP = "approval_gate"
TOPICS = ("job.sre.classify", "job.sre.logs", "job.sre.metrics", "job.sre.rollback")

YAML = """
id: incident_triage_parallel
name: Incident Triage With Governance
steps:
  classify:
    type: worker
    topic: job.sre.classify
    input:
      incident_id: "${input.incident_id}"
      summary: "${input.summary}"
  fanout_diagnostics:
    type: parallel
    depends_on: [classify]
    steps: [logs_scan, metric_scan]
    strategy: all
  logs_scan:
    type: worker
    topic: job.sre.logs
    retry:
      max_retries: 2
      initial_backoff_sec: 1
      max_backoff_sec: 8
      multiplier: 2
  metric_scan:
    type: worker
    topic: job.sre.metrics
  approval_gate:
    type: approval
    depends_on: [fanout_diagnostics]
    input:
      approval_reason: "Apply production rollback"
      next_effect: "Traffic shifts to last known good build"
  rollback:
    type: worker
    depends_on: [approval_gate]
    topic: job.sre.rollback
"""


def workflow(wf: str = WORKFLOW_ID, prefix: str = "job.sre") -> Workflow:
    """The article's workflow; another id and topic prefix give a copy (tests run their own)."""
    return load_workflow(YAML.replace(WORKFLOW_ID, wf).replace("job.sre.", prefix + "."))


def add_participants(consumer: Consumer, wf: str = WORKFLOW_ID, prefix: str = "job.sre") -> Consumer:
    """Subscribe the SRE jobs (classify, logs, metrics, rollback) of ``prefix`` to ``consumer``."""

    @consumer.participant(f"{prefix}.classify")
    async def classify(cmd: Command, tx: Tx) -> dict[str, Any]:
        summary = str((cmd.input or {}).get("summary", ""))
        return {"severity": "sev1" if "down" in summary else "sev2", "service": "checkout"}

    @consumer.participant(f"{prefix}.logs")
    async def logs_scan(cmd: Command, tx: Tx) -> dict[str, Any]:
        if cmd.attempt == 1:
            raise StepFailed("log store busy", retriable=True)
        return {"errors_per_min": 412, "first_seen": "deploy 2026.11.29-3"}

    @consumer.participant(f"{prefix}.metrics")
    async def metric_scan(cmd: Command, tx: Tx) -> dict[str, Any]:
        return {"p95_ms": 2140, "baseline_p95_ms": 510}

    @consumer.participant(f"{prefix}.rollback")
    async def rollback(cmd: Command, tx: Tx) -> dict[str, Any]:
        await tx.send("INSERT INTO demo_saga_effects (workflow, kind, run_id, idempotency_key)"
                      " VALUES (%s, %s, %s, %s)", (wf, "rollback", cmd.run_id, cmd.idempotency_key))
        return {"rolled_back_to": "2026.11.29-2"}

    return consumer
