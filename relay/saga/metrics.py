"""Prometheus metrics of a saga coordinator, read off the runs' timelines (on the worker's registry).

- ``relay_saga_transitions_total{workflow,outcome}``: timeline entries by kind (dispatched,
  attempt failed, attempt timed out, succeeded, failed, timed_out (the step's end), compensation
  dispatched, compensated, compensation failed,
  compensation skipped, approved, denied, run <state>, ...);
- ``relay_saga_retries_total{workflow}``: commands sent again (attempt > 1), compensations too;
- ``relay_saga_step_seconds{workflow,step}``: from a step's last dispatch to its success;
- ``relay_saga_approval_wait_seconds{workflow,kind}``: from an approval's request to its decision:
  ``kind="step"`` an approval step, ``kind="gate"`` the policy gate's request for a command
  (observed when it is decided: the last of its approvers, or a denial);
- ``relay_saga_runs{workflow,state}`` and ``relay_saga_oldest_run_seconds{workflow,state}``: the
  runs that are not over (pending, running, awaiting_approval, compensating) and the manual queue
  (compensation_failed), from ``saga_runs``, refreshed every few seconds (the oldest: since the
  run last changed); 0 when there are none. Ended runs are counted as they end, by
  ``relay_saga_transitions_total{outcome="run completed"}`` and its siblings: counting every run
  ever stored read the whole table at each refresh (126 ms with 100,000 runs, growing with them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from relay.saga.state import RunState, RunStatus

OUTCOMES = ("compensation awaiting approval", "awaiting approval", "approval refused", "approval escalated",
            "throttled", "compensation denied", "rollback window extended",
            "compensation dispatched", "compensation failed", "compensation skipped", "compensation started",
            "compensated", "attempt failed", "attempt timed out", "dispatched", "succeeded", "failed", "timed_out",
            "approved", "denied",
            "skipped", "stopped", "retries stopped", "cancelled", "retried", "started", "undo requested",
            "answered the parent again", "run")
# the states a run can still leave, by an event or by an operator (the manual queue)
GAUGED_STATES = (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.AWAITING_APPROVAL, RunStatus.COMPENSATING,
                 RunStatus.COMPENSATION_FAILED)
RUNS_BY_STATE = """
SELECT workflow, status, count(*), coalesce(extract(epoch FROM now() - min(updated_at)), 0)
FROM saga_runs WHERE status = ANY(%s) GROUP BY workflow, status
"""
RUNS_BY_STATE_PARAMS = ([s.value for s in GAUGED_STATES],)


def outcome_kind(outcome: str) -> str:
    """The bounded label of a timeline outcome ("approved by ann" -> "approved")."""
    for kind in OUTCOMES:
        if outcome.startswith(kind):
            return outcome if kind == "run" else kind
    return outcome.split(" ", 1)[0]


class SagaMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry or CollectorRegistry()
        self.transitions = Counter("relay_saga_transitions_total", "saga timeline entries by kind",
                                   ["workflow", "outcome"], registry=reg)
        self.retries = Counter("relay_saga_retries_total", "saga commands sent again (attempt > 1)", ["workflow"],
                               registry=reg)
        self.step_seconds = Histogram("relay_saga_step_seconds", "a step's last dispatch to its success",
                                      ["workflow", "step"], registry=reg,
                                      buckets=(.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))
        self.approval_wait = Histogram("relay_saga_approval_wait_seconds", "an approval's request to its decision",
                                       ["workflow", "kind"], registry=reg,
                                       buckets=(1, 10, 60, 300, 1800, 3600, 4 * 3600, 24 * 3600))
        self.runs = Gauge("relay_saga_runs", "saga runs by state", ["workflow", "state"], registry=reg)
        self.oldest = Gauge("relay_saga_oldest_run_seconds", "since the least recently changed run of a state changed",
                            ["workflow", "state"], registry=reg)

    def observe(self, before: RunState | None, after: RunState) -> None:
        """Count what ``after`` added to the run's timeline."""
        wf, start = after.workflow, len(before.timeline) if before is not None else 0
        for entry in after.timeline[start:]:  # an entry leaves out its None values (RunCore.log)
            kind, step = outcome_kind(str(entry["outcome"])), entry.get("step")
            self.transitions.labels(wf, kind).inc()
            if kind in ("dispatched", "compensation dispatched") and (entry.get("attempt") or 1) > 1:
                self.retries.labels(wf).inc()
            elif kind == "succeeded" and step:
                since = _last(after.timeline, step, ("dispatched",), before=entry)
                if since is not None:
                    self.step_seconds.labels(wf, _step_label(step)).observe(max(0.0, entry["at"] - since[0]))
            elif kind in ("approved", "denied") and step and _decides(str(entry["outcome"])):
                since = _last(after.timeline, step, REQUESTED, before=entry)
                if since is not None:
                    gate = str(since[1]).endswith("awaiting approval")
                    self.approval_wait.labels(wf, "gate" if gate else "step").observe(max(0.0, entry["at"] - since[0]))

    def set_runs(self, rows: Iterable[tuple[str, str, int, float]], workflows: Iterable[str] = ()) -> None:
        """Rows of RUNS_BY_STATE; every gauged state of ``workflows`` without a row is 0."""
        self.runs.clear()
        self.oldest.clear()
        for workflow in workflows:
            for gauged in GAUGED_STATES:
                self.runs.labels(workflow, gauged.value).set(0)
                self.oldest.labels(workflow, gauged.value).set(0)
        for workflow, state, count, oldest_s in rows:
            self.runs.labels(workflow, state).set(count)
            self.oldest.labels(workflow, state).set(float(oldest_s))


def _step_label(step: str) -> str:
    return step.split("[", 1)[0]  # for_each children share their step's label (bounded cardinality)


REQUESTED = ("approval started", "awaiting approval", "compensation awaiting approval")


def _decides(outcome: str) -> bool:
    """Whether a decision entry decided its request ("approved by bob (1 of 2)" does not)."""
    if outcome.endswith(")") and " of " in outcome:
        counted, needed = outcome.rsplit("(", 1)[1].rstrip(")").split(" of ")
        return counted.strip() == needed.strip()
    return True


def _last(timeline: list[dict[str, Any]], step: str, outcomes: tuple[str, ...], *, before: Mapping[str, Any],
          ) -> tuple[float, str] | None:
    """(when, what) of the last entry of ``step`` starting with one of ``outcomes`` before ``before``."""
    found = None
    for entry in timeline:
        if entry is before:
            break
        if entry.get("step") == step and str(entry["outcome"]).startswith(outcomes):
            found = (float(entry["at"]), str(entry["outcome"]))
    return found
