"""Build a :class:`~relay.saga.model.Workflow` from a YAML document or a mapping.

Every problem is collected and reported at once (:class:`relay.errors.SagaDefinitionError`),
each naming the step, the field, the value and what was expected; unknown keys are problems too
(a misspelt ``depends_on`` must not silently start a step early). The YAML shape:

    id: order_saga
    deadline_sec: 600                 # optional: the whole run
    rollback_window_sec: 30           # optional: how long compensation may take before it is manual
    steps:
      charge:
        type: worker
        topic: payment.charge
        input: {order: "${input.order_id}", amount: "${input.amount}"}
        side_effect: true
        compensation: {topic: payment.refund, input: {charge: "${steps.charge.output.charge_id}"}}
        retry: {max_retries: 2, initial_backoff_sec: 1, max_backoff_sec: 8, multiplier: 2}
        timeout_sec: 30
      ship: {type: worker, topic: shipping.ship, depends_on: [charge], on_failure: retry}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from relay.documents import Problems, read_yaml
from relay.errors import SagaDefinitionError
from relay.policy.model import EffectClass
from relay.saga.model import (
    DEFAULT_FOR_EACH_CAP,
    DEFAULT_ROLLBACK_WINDOW_S,
    Compensation,
    OnFailure,
    OnStale,
    RetryPolicy,
    Step,
    StepType,
    Strategy,
    Workflow,
    definition_hash,
)
from relay.saga.validate import validate

COMMON_KEYS = {"type", "depends_on", "input", "on_error", "description"}
KEYS: dict[StepType, set[str]] = {
    StepType.WORKER: {"topic", "retry", "timeout_sec", "side_effect", "compensation", "no_rollback_reason",
                      "on_failure", "effect", "expected_version", "on_stale"},
    StepType.APPROVAL: {"expires_sec"},
    StepType.PARALLEL: {"steps", "strategy", "max_parallel"},
    StepType.FOR_EACH: {"topic", "items", "max_items", "max_parallel", "retry", "timeout_sec", "side_effect",
                        "compensation", "no_rollback_reason", "on_failure", "effect", "expected_version",
                        "on_stale"},
    StepType.DELAY: {"seconds"},
    StepType.CONDITION: {"expression"},
    StepType.SUBWORKFLOW: {"workflow"},
}
WORKFLOW_ID = re.compile(r"[A-Za-z0-9_-]{1,150}")
WORKFLOW_KEYS = {"id", "name", "steps", "deadline_sec", "rollback_window_sec", "description", "version"}
RETRY_KEYS = {"max_retries", "initial_backoff_sec", "max_backoff_sec", "multiplier"}




def load_workflow(source: str | Path) -> Workflow:
    """A workflow from YAML text or a path to a YAML file."""
    return build_workflow(read_yaml(source, by="relay.saga.load_workflow", error=SagaDefinitionError))


def build_workflow(doc: Any) -> Workflow:
    """A validated workflow from a mapping; raises SagaDefinitionError listing every problem."""
    if not isinstance(doc, Mapping):
        raise SagaDefinitionError("?", [f"the definition is a {type(doc).__name__}; "
                                        "expected a mapping with id and steps"])
    wid = doc.get("id")
    p = Problems()
    if not isinstance(wid, str) or not WORKFLOW_ID.fullmatch(wid):
        p.add(None, "id", wid, "1-150 letters, digits, '_' or '-' (it names the topic outbox.event.saga.<id>)")
        wid = str(wid)
    for key in sorted(set(doc) - WORKFLOW_KEYS):
        p.add(None, key, doc[key], f"one of {sorted(WORKFLOW_KEYS)}")
    raw_steps = doc.get("steps")
    steps: dict[str, Step] = {}
    if not isinstance(raw_steps, Mapping) or not raw_steps:
        p.add(None, "steps", raw_steps, "a non-empty mapping of step id -> step")
    else:
        for sid, raw in raw_steps.items():
            step = _step(p, str(sid), raw)
            if step is not None:
                steps[step.id] = step
    deadline = _seconds(p, None, "deadline_sec", doc.get("deadline_sec"), optional=True)
    window = _seconds(p, None, "rollback_window_sec", doc.get("rollback_window_sec", DEFAULT_ROLLBACK_WINDOW_S))
    validate(p, steps)  # also when fields had problems: every problem is reported at once
    if p:
        raise SagaDefinitionError(wid, p.lines)
    window = window if window is not None else DEFAULT_ROLLBACK_WINDOW_S
    return Workflow(id=wid, steps=steps, name=str(doc.get("name") or wid), deadline_s=deadline,
                    rollback_window_s=window, hash=definition_hash(wid, steps, deadline, window))


def _step(p: Problems, sid: str, raw: Any) -> Step | None:
    if not isinstance(raw, Mapping):
        p.add(sid, "", raw, "a mapping with at least 'type'")
        return None
    try:
        stype = StepType(str(raw.get("type")))
    except ValueError:
        p.add(sid, "type", raw.get("type"), f"one of {[t.value for t in StepType]}")
        return None
    allowed = COMMON_KEYS | KEYS[stype]
    for key in sorted(set(raw) - allowed):
        p.add(sid, key, raw[key], f"a field of a {stype.value} step: one of {sorted(allowed)}")
    depends = raw.get("depends_on", [])
    if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
        p.add(sid, "depends_on", depends, "a list of step ids")
        depends = []
    members = raw.get("steps", [])
    if stype is StepType.PARALLEL and (not isinstance(members, list) or not members
                                       or not all(isinstance(m, str) for m in members)):
        p.add(sid, "steps", members, "a non-empty list of step ids")
        members = []
    inp = raw.get("input", {})
    if not isinstance(inp, Mapping):
        p.add(sid, "input", inp, "a mapping")
        inp = {}
    return Step(
        id=sid, type=stype, depends_on=tuple(depends), topic=_opt_str(p, sid, "topic", raw.get("topic")),
        input=dict(inp), retry=_retry(p, sid, "retry", raw.get("retry")),
        timeout_s=_seconds(p, sid, "timeout_sec" if stype is not StepType.APPROVAL else "expires_sec",
                           raw.get("timeout_sec", raw.get("expires_sec")), optional=True),
        side_effect=_bool(p, sid, "side_effect", raw.get("side_effect", False)),
        compensation=_compensation(p, sid, raw.get("compensation")),
        no_rollback_reason=_opt_str(p, sid, "no_rollback_reason", raw.get("no_rollback_reason")),
        on_error=_opt_str(p, sid, "on_error", raw.get("on_error")),
        on_failure=_enum(p, sid, "on_failure", raw.get("on_failure", "compensate"), OnFailure),
        members=tuple(members) if stype is StepType.PARALLEL else (),
        strategy=_enum(p, sid, "strategy", raw.get("strategy", "all"), Strategy),
        max_parallel=_count(p, sid, "max_parallel", raw.get("max_parallel"), optional=True),
        items=_opt_str(p, sid, "items", raw.get("items")),
        max_items=_count(p, sid, "max_items", raw.get("max_items", DEFAULT_FOR_EACH_CAP)) or DEFAULT_FOR_EACH_CAP,
        delay_s=_seconds(p, sid, "seconds", raw.get("seconds"), optional=True),
        expression=_opt_str(p, sid, "expression", raw.get("expression")),
        workflow=_opt_str(p, sid, "workflow", raw.get("workflow")),
        effect=None if raw.get("effect") is None else _enum(p, sid, "effect", raw.get("effect"), EffectClass),
        expected_version=_opt_str(p, sid, "expected_version", raw.get("expected_version")),
        on_stale=_enum(p, sid, "on_stale", raw.get("on_stale", "fail"), OnStale),
    )


def _retry(p: Problems, sid: str, name: str, raw: Any) -> RetryPolicy:
    if raw is None:
        return RetryPolicy()
    if not isinstance(raw, Mapping):
        p.add(sid, name, raw, f"a mapping of {sorted(RETRY_KEYS)}")
        return RetryPolicy()
    for key in sorted(set(raw) - RETRY_KEYS):
        p.add(sid, f"{name}.{key}", raw[key], f"one of {sorted(RETRY_KEYS)}")
    base = RetryPolicy()
    retries = _count(p, sid, f"{name}.max_retries", raw.get("max_retries", base.max_attempts - 1), zero=True)
    initial = _seconds(p, sid, f"{name}.initial_backoff_sec", raw.get("initial_backoff_sec", base.initial_backoff_s))
    top = _seconds(p, sid, f"{name}.max_backoff_sec", raw.get("max_backoff_sec", base.max_backoff_s))
    mult = raw.get("multiplier", base.multiplier)
    if isinstance(mult, bool) or not isinstance(mult, (int, float)) or mult < 1:
        p.add(sid, f"{name}.multiplier", mult, "a number >= 1")
        mult = base.multiplier
    return RetryPolicy(max_attempts=(retries or 0) + 1, initial_backoff_s=initial or base.initial_backoff_s,
                       max_backoff_s=top or base.max_backoff_s, multiplier=float(mult))


def _compensation(p: Problems, sid: str, raw: Any) -> Compensation | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not isinstance(raw.get("topic"), str) or not raw.get("topic"):
        p.add(sid, "compensation", raw, "a mapping with a 'topic' (and optionally 'input', 'retry')")
        return None
    for key in sorted(set(raw) - {"topic", "input", "retry"}):
        p.add(sid, f"compensation.{key}", raw[key], "one of ['input', 'retry', 'topic']")
    inp = raw.get("input", {})
    if not isinstance(inp, Mapping):
        p.add(sid, "compensation.input", inp, "a mapping")
        inp = {}
    retry = _retry(p, sid, "compensation.retry", raw.get("retry"))
    return Compensation(topic=raw["topic"], input=dict(inp), retry=retry)


def _opt_str(p: Problems, sid: str, name: str, raw: Any) -> str | None:
    if raw is None or (isinstance(raw, str) and raw):
        return raw
    p.add(sid, name, raw, "a non-empty string")
    return None


def _bool(p: Problems, sid: str, name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    p.add(sid, name, raw, "true or false")
    return False


def _seconds(p: Problems, sid: str | None, name: str, raw: Any, *, optional: bool = False) -> float | None:
    if raw is None and optional:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw <= 0:
        p.add(sid, name, raw, "a number of seconds > 0")
        return None
    return float(raw)


def _count(p: Problems, sid: str, name: str, raw: Any, *, optional: bool = False, zero: bool = False) -> int | None:
    if raw is None and optional:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < (0 if zero else 1):
        p.add(sid, name, raw, f"an integer >= {0 if zero else 1}")
        return None
    return raw


def _enum(p: Problems, sid: str, name: str, raw: Any, kind: Any) -> Any:
    try:
        return kind(raw)
    except ValueError:
        p.add(sid, name, raw, f"one of {[k.value for k in kind]}")
        return next(iter(kind))
