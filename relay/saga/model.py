"""The validated model of a saga definition: a workflow of steps forming a DAG.

Definitions come from YAML (:func:`relay.saga.load.load_workflow`) or from Python; both build
these frozen objects, and only :func:`relay.saga.load.build_workflow` builds them, after checking
everything (:mod:`relay.saga.validate`). A run is pinned to the :attr:`Workflow.hash` it started
with: the hash covers every field that changes behaviour, so a changed definition is a new version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from relay.policy.model import EffectClass


class StepType(StrEnum):
    WORKER = "worker"          # a command to a topic; a reply is expected
    APPROVAL = "approval"      # waits until approved, denied or expired
    PARALLEL = "parallel"      # fan-out over named member steps
    FOR_EACH = "for_each"      # one child command per item of a list
    DELAY = "delay"            # waits a fixed time
    CONDITION = "condition"    # true: succeeds; false: skips itself and every step that needs it
    SUBWORKFLOW = "subworkflow"  # a child run; its terminal state is this step's outcome


class Strategy(StrEnum):
    ALL = "all"  # succeeds when every member succeeded
    ANY = "any"  # succeeds when one member succeeded


class OnStale(StrEnum):
    """What a participant's refusal of a stale expected version does to the step."""

    FAIL = "fail"    # surfaced: the step fails (and the run compensates), never applied
    RETRY = "retry"  # retried with the step's backoff (the participant may have caught up by then)


class OnFailure(StrEnum):
    COMPENSATE = "compensate"  # retries exhausted or a fatal error: the run compensates (default)
    RETRY = "retry"            # a step past the pivot: retried until the run's deadline, never compensated


DEFAULT_MAX_ATTEMPTS = 50
DEFAULT_INITIAL_BACKOFF_S = 1.0
DEFAULT_MAX_BACKOFF_S = 30.0
DEFAULT_MULTIPLIER = 2.0
DEFAULT_FOR_EACH_CAP = 1000
DEFAULT_ROLLBACK_WINDOW_S = 30.0


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: attempt n (1-based) failing retriably waits
    ``min(initial * multiplier ** (n - 1), max)`` before attempt n + 1, up to ``max_attempts``."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    initial_backoff_s: float = DEFAULT_INITIAL_BACKOFF_S
    max_backoff_s: float = DEFAULT_MAX_BACKOFF_S
    multiplier: float = DEFAULT_MULTIPLIER

    def backoff_s(self, attempt: int) -> float:
        return float(min(self.initial_backoff_s * self.multiplier ** max(0, attempt - 1), self.max_backoff_s))


@dataclass(frozen=True)
class Compensation:
    """What undoes a step: a command to ``topic`` (its input templated like a step's)."""

    topic: str
    input: dict[str, Any] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True)
class Step:
    id: str
    type: StepType
    depends_on: tuple[str, ...] = ()
    topic: str | None = None                  # worker, for_each
    input: dict[str, Any] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_s: float | None = None            # per attempt (worker, for_each child); approval expiry
    side_effect: bool = False
    compensation: Compensation | None = None
    no_rollback_reason: str | None = None
    on_error: str | None = None               # a step run when this one fails; its success unblocks dependents
    on_failure: OnFailure = OnFailure.COMPENSATE
    members: tuple[str, ...] = ()             # parallel
    strategy: Strategy = Strategy.ALL         # parallel
    max_parallel: int | None = None           # parallel, for_each
    items: str | None = None                  # for_each: a template giving a list
    max_items: int = DEFAULT_FOR_EACH_CAP     # for_each
    delay_s: float | None = None              # delay
    expression: str | None = None             # condition
    workflow: str | None = None               # subworkflow
    effect: EffectClass | None = None         # what its command does to the world (the policy gate's fact)
    expected_version: str | None = None       # worker, for_each: a template; the aggregate version it expects
    on_stale: OnStale = OnStale.FAIL


@dataclass(frozen=True)
class Workflow:
    id: str
    steps: dict[str, Step]
    name: str = ""
    deadline_s: float | None = None
    rollback_window_s: float = DEFAULT_ROLLBACK_WINDOW_S
    hash: str = ""

    def members_of(self) -> dict[str, str]:
        """member step id -> the parallel step that starts it."""
        return {m: s.id for s in self.steps.values() for m in s.members}

    def roots(self) -> list[str]:
        """Steps ready at the start: no dependencies and not started by a parallel step."""
        owned = self.members_of()
        handlers = {s.on_error for s in self.steps.values() if s.on_error}
        return [s for s, step in self.steps.items() if not step.depends_on and s not in owned and s not in handlers]


def definition_hash(workflow_id: str, steps: dict[str, Step], deadline_s: float | None,
                    rollback_window_s: float) -> str:
    """sha256 of the canonical JSON of everything that changes behaviour (not the display name)."""
    doc = {"id": workflow_id, "deadline_s": deadline_s, "rollback_window_s": rollback_window_s,
           "steps": {k: _hashed(v) for k, v in sorted(steps.items())}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _hashed(step: Step) -> dict[str, Any]:
    """A step as its hash sees it: ``effect`` and the expected version only when declared, so
    that every definition written before steps had them keeps its hash (and its runs in flight
    their version)."""
    d = asdict(step)
    for name, unset in (("effect", None), ("expected_version", None), ("on_stale", OnStale.FAIL)):
        if d[name] == unset:
            del d[name]
    return d


def to_doc(wf: Workflow) -> dict[str, Any]:
    """The resolved definition as JSON (defaults filled in): what is stored under its hash."""
    return {"id": wf.id, "name": wf.name, "deadline_s": wf.deadline_s, "rollback_window_s": wf.rollback_window_s,
            "hash": wf.hash, "steps": {k: asdict(v) for k, v in wf.steps.items()}}


def from_doc(doc: dict[str, Any]) -> Workflow:
    """A stored definition back: the same model and hash, whatever this code's defaults are now."""
    steps = {}
    for sid, raw in doc["steps"].items():
        d = dict(raw)
        d["type"], d["strategy"] = StepType(d["type"]), Strategy(d["strategy"])
        d["on_failure"] = OnFailure(d["on_failure"])
        d["retry"] = RetryPolicy(**d["retry"])
        if d["compensation"] is not None:
            c = dict(d["compensation"])
            d["compensation"] = Compensation(topic=c["topic"], input=c["input"], retry=RetryPolicy(**c["retry"]))
        d["depends_on"], d["members"] = tuple(d["depends_on"]), tuple(d["members"])
        d["effect"] = EffectClass(d["effect"]) if d.get("effect") else None
        d["expected_version"] = d.get("expected_version")
        d["on_stale"] = OnStale(d.get("on_stale") or OnStale.FAIL)
        steps[sid] = Step(**d)
    wf = Workflow(id=doc["id"], steps=steps, name=doc.get("name", doc["id"]), deadline_s=doc["deadline_s"],
                  rollback_window_s=doc["rollback_window_s"], hash=doc["hash"])
    if definition_hash(wf.id, steps, wf.deadline_s, wf.rollback_window_s) != wf.hash:
        raise ValueError(f"stored definition {wf.id!r} does not hash to {wf.hash[:12]}: it was altered")
    return wf
