"""A saga run's durable state, the events that move it and the commands it emits.

Everything here is plain data (JSON-able through :func:`to_json` / :func:`from_json`), so the
coordinator can keep it in a compacted changelog keyed by run id and the pure engine
(:func:`relay.saga.engine.decide`) can be tested without any I/O.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from relay.policy.model import Throttle


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    COMPLETED = "completed"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"  # the manual queue: never dropped, never a plain failure
    FAILED = "failed"        # failed with nothing to undo, or a step that must not be compensated failed
    CANCELLED = "cancelled"  # cancelled by an operator; what had completed was compensated


TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.COMPENSATED, RunStatus.COMPENSATION_FAILED,
                      RunStatus.FAILED, RunStatus.CANCELLED})


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"            # a command, child run or fan-out is out
    WAITING = "waiting"            # approval or delay
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DENIED = "denied"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"            # a false condition, or a step needing a skipped one
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"
    NOT_RUN = "not_run"            # never started: the run ended first


FAILURES = frozenset({StepStatus.FAILED, StepStatus.DENIED, StepStatus.TIMED_OUT})
SETTLED = FAILURES | {StepStatus.SUCCEEDED, StepStatus.SKIPPED, StepStatus.COMPENSATED,
                      StepStatus.COMPENSATION_FAILED, StepStatus.NOT_RUN}


@dataclass
class StepState:
    status: StepStatus = StepStatus.PENDING
    attempt: int = 0
    command_id: str | None = None
    output: Any = None
    error: str | None = None
    uncertain: bool = False        # the last attempt timed out: its effect may have happened
    undo_attempt: int = 0
    attempt_base: int = 0          # attempts before an operator's retry (the retry policy counts from here)
    undo_base: int = 0
    children: list[str] = field(default_factory=list)  # for_each: the child step keys, in item order


@dataclass
class Timer:
    kind: str                      # backoff | timeout | delay | expiry | deadline | rollback | undo_backoff |
    step: str | None               # throttle | undo_throttle | gate_expiry | undo_gate_expiry
    attempt: int


@dataclass
class RunState:
    run_id: str
    workflow: str
    definition_hash: str
    input: dict[str, Any]
    status: RunStatus = RunStatus.RUNNING
    started_at: float = 0.0
    updated_at: float = 0.0
    business_key: str | None = None
    parent_workflow: str | None = None
    steps: dict[str, StepState] = field(default_factory=dict)
    inflight: dict[str, str] = field(default_factory=dict)     # command id -> step key
    timers: dict[str, Timer] = field(default_factory=dict)     # timer id -> what it is for
    approvals: dict[str, dict[str, Any]] = field(default_factory=dict)  # step -> decision (also early ones)
    done_order: list[str] = field(default_factory=list)        # step keys in completion order (LIFO undo)
    undo: list[str] | None = None                              # compensation stack (top last); None: not built
    cancelled: bool = False
    rollbacks: int = 0                                         # compensation rounds started (timer ids)
    undo_request: str | None = None                            # a child run: the parent's undo request it answers
    undo_request_attempt: int = 0                              # ... and its attempt (older ones are ignored)
    reason: str | None = None                                  # why the run failed or was cancelled
    initiator: str | None = None                               # who started it (four eyes)
    gates: dict[str, dict[str, Any]] = field(default_factory=dict)  # gate approval requests by target
    evidence: list[Any] | None = None                          # [seq, head hash, timeline entries chained]
    timeline: list[dict[str, Any]] = field(default_factory=list)


# -- events ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Start:
    run_id: str
    input: dict[str, Any]
    at: float
    business_key: str | None = None
    parent_workflow: str | None = None  # a child run: the workflow of the run it reports to
    initiator: str | None = None        # who started it: with four eyes, not an approver


@dataclass(frozen=True)
class Reply:
    """A participant's answer to a command; ``retriable`` matters only when ``ok`` is False."""

    command_id: str
    ok: bool
    at: float
    output: Any = None
    error: str | None = None
    retriable: bool = True
    uncertain: bool = False  # the participant could not tell whether its effect happened


@dataclass(frozen=True)
class TimerFired:
    timer_id: str
    at: float


@dataclass(frozen=True)
class Approval:
    step: str
    approved: bool
    at: float
    by: str = ""
    reason: str = ""
    payload_hash: str | None = None  # what the approver saw: a gate's request counts only its own


@dataclass(frozen=True)
class Throttled:
    """From the coordinator, never on the wire: a throttled command's slot in its bucket is at
    ``not_before``, so it is sent then (its reservation held), not now."""

    command_id: str
    not_before: float
    at: float


@dataclass(frozen=True)
class Cancel:
    at: float
    reason: str = "cancelled by an operator"


@dataclass(frozen=True)
class RetryRun:
    """An operator's retry of a failed or compensation_failed run, from where it stopped."""

    at: float


@dataclass(frozen=True)
class ChildDone:
    """A child run's end. ``request``: the parent's undo request it answers (None: the child's own end)."""

    child_run_id: str
    status: RunStatus
    at: float
    output: Any = None
    reason: str | None = None
    request: str | None = None


@dataclass(frozen=True)
class CompensateRequest:
    """To a child run: its parent undoes the step that ran it, so the child undoes what it completed.
    ``request_id`` is the parent's undo command id; ``attempt`` grows with each request of that step."""

    request_id: str
    attempt: int
    at: float
    parent_run_id: str
    parent_step: str


Event = Start | Reply | TimerFired | Approval | Cancel | RetryRun | ChildDone | CompensateRequest | Throttled


# -- commands --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dispatch:
    """A command to a participant. ``command_id`` is unique per attempt (a re-sent command keeps
    it); ``idempotency_key`` is stable across attempts of one step (the effect's key)."""

    command_id: str
    run_id: str
    step: str
    attempt: int
    topic: str
    input: Any
    idempotency_key: str
    compensation: bool = False
    throttle: Throttle | None = None  # a throttle verdict: the coordinator takes a slot of ``bucket`` first
    bucket: str | None = None
    expected_version: Any = None      # the aggregate version the participant must find (optimistic concurrency)
    on_stale: str | None = None       # retry | fail: what a stale version does to the step


@dataclass(frozen=True)
class SetTimer:
    timer_id: str
    run_id: str
    fire_at: float


@dataclass(frozen=True)
class RequestApproval:
    run_id: str
    step: str
    input: Any
    expires_at: float | None
    gate: dict[str, Any] | None = None  # the policy gate's request: hash, rule, policy, scope... (None: a step)


@dataclass(frozen=True)
class StartChild:
    child_run_id: str
    workflow: str
    input: Any
    parent_run_id: str
    parent_step: str
    initiator: str | None = None   # the parent's: four eyes hold in the child run too


@dataclass(frozen=True)
class CompensateChild:
    """The undo of a completed subworkflow step: a request to its child run to compensate itself."""

    command_id: str                # the parent's undo command id (one per attempt)
    child_run_id: str
    workflow: str                  # the child's workflow: the request goes to its saga topic
    parent_run_id: str
    parent_step: str
    attempt: int


@dataclass(frozen=True)
class Finished:
    """A run's end. ``answers``: the parent's undo request a child run answers with it; ``again``:
    the same end told to the parent once more (a later request to a run that had ended)."""

    run_id: str
    status: RunStatus
    output: Any = None
    reason: str | None = None
    answers: str | None = None
    again: bool = False


Command = Dispatch | SetTimer | RequestApproval | StartChild | CompensateChild | Finished


def clone(state: RunState) -> RunState:
    """A copy :func:`relay.saga.engine.decide` may change without touching ``state``: every
    container the engine changes in place is copied (steps, their children lists, in-flight
    commands, timers, approvals, the completion order, the undo stack, the timeline); what it
    only ever replaces or appends (outputs, timeline entries, approval decisions, the input) is
    shared. A deep copy of the run per event was a tenth of a busy coordinator's CPU."""
    new = object.__new__(RunState)  # copy.copy's reduce protocol took as long as the copying
    new.__dict__.update(state.__dict__)
    new.steps = {k: _clone_step(st) for k, st in state.steps.items()}
    new.inflight, new.timers, new.approvals = dict(state.inflight), dict(state.timers), dict(state.approvals)
    new.done_order, new.timeline = list(state.done_order), list(state.timeline)
    new.gates = dict(state.gates)  # entries are replaced, never changed in place
    new.undo = None if state.undo is None else list(state.undo)
    return new


def _clone_step(st: StepState) -> StepState:
    new = object.__new__(StepState)
    new.__dict__.update(st.__dict__)
    new.children = list(st.children)
    return new


def to_json(state: RunState) -> dict[str, Any]:
    """The run as a JSON-ready dict, equal to ``dataclasses.asdict(state)`` but shallow: nested
    values (outputs, the timeline) are shared, not copied, so serialise it before the run changes
    again. asdict's deep copy was a tenth of a busy coordinator's CPU."""
    doc = {name: getattr(state, name) for name in _RUN_FIELDS}
    doc["status"] = state.status.value
    doc["steps"] = {k: {**vars(st), "status": st.status.value} for k, st in state.steps.items()}
    doc["timers"] = {k: dict(vars(t)) for k, t in state.timers.items()}
    return doc


def to_stored(state: RunState) -> dict[str, Any]:
    """:func:`to_json` without what :func:`from_json` restores: fields at their defaults (the
    identity, the input and the status stay). With timeline entries that leave out their None
    values, a 3-step run's document is a third smaller (3.2 -> 1.9 kB), which is less JSON to
    write and parse per transition, in the coordinator and in Postgres. Shallow like to_json."""
    doc = _set_fields(state, _RUN_FIELDS, _RUN_DEFAULTS)
    if state.steps:
        doc["steps"] = {k: _set_fields(st, _STEP_FIELDS, _STEP_DEFAULTS) for k, st in state.steps.items()}
    if state.timers:
        doc["timers"] = {k: dict(vars(t)) for k, t in state.timers.items()}
    if state.timeline:
        doc["timeline"] = state.timeline  # its entries leave out None values already (RunCore.log)
    return doc


def _set_fields(obj: Any, names: tuple[str, ...], defaults: dict[str, Any]) -> dict[str, Any]:
    """``obj``'s fields that differ from ``defaults`` (those without one always), status as text."""
    doc = {name: value for name in names if (value := getattr(obj, name)) != defaults.get(name, _KEEP)}
    doc["status"] = obj.status.value
    return doc


def from_json(doc: dict[str, Any]) -> RunState:
    """The run of a :func:`to_json` or :func:`to_stored` document."""
    d = dict(doc)
    d["status"] = RunStatus(d["status"])
    d["steps"] = {k: StepState(**{**v, "status": StepStatus(v["status"])}) for k, v in d.get("steps", {}).items()}
    d["timers"] = {k: Timer(**v) for k, v in d.get("timers", {}).items()}
    d["timeline"] = list(d.get("timeline", ()))
    return RunState(**d)


_RUN_FIELDS = tuple(f.name for f in dataclasses.fields(RunState))
_STEP_FIELDS = tuple(f.name for f in dataclasses.fields(StepState))
_KEEP = object()  # no default: always stored
_RUN_KEPT = frozenset({"run_id", "workflow", "definition_hash", "input", "status"})
_RUN_DEFAULTS: dict[str, Any] = {k: v for k, v in vars(RunState("", "", "", {})).items() if k not in _RUN_KEPT}
_STEP_DEFAULTS: dict[str, Any] = {k: v for k, v in vars(StepState()).items() if k != "status"}  # status: kept
# every key of a timeline entry (relay.saga.core.RunCore.log), which leaves out the None ones
TIMELINE_KEYS: dict[str, Any] = dict.fromkeys(("at", "step", "attempt", "command_id", "outcome", "error",
                                               "definition"))
