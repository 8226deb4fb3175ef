"""The policy gate's inputs (pure): which policy, in which environment, and the facts of a command.

    gate = Gate(load_policy("policy.yaml"), env="production")
    SagaCoordinator([workflow], gate=gate)

Before every command a run sends, forward or compensation, the engine evaluates the policy on
the command's facts (:func:`facts`); the dry-run plan (:mod:`relay.saga.plan`) uses the same
facts with what the run's input alone determines. What the engine does with each verdict is in
:mod:`relay.saga.gating`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from relay.policy.model import Policy
from relay.saga.model import Step, Workflow


@dataclass(frozen=True)
class Gate:
    policy: Policy
    env: str = "production"  # the env fact of every action (RELAY_POLICY_ENV)


def payload_hash(topic: str, payload: Any) -> str:
    """sha256 of what a command would do: its topic and its rendered input, canonical JSON. An
    approval names it: approving one payload does not approve another. Numbers are taken as
    Postgres' jsonb gives them back (a whole float such as 1e16 or -0.0 is the integer), so a
    payload hashes the same before and after a trip through a stored run or the outbox."""
    doc = json.dumps({"topic": topic, "input": _numbers(payload)}, sort_keys=True, separators=(",", ":"),
                     default=str)
    return hashlib.sha256(doc.encode()).hexdigest()


def _numbers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def facts(wf: Workflow, step: Step, command_input: Any, *, env: str, compensation: bool = False,
          approval_present: bool = False) -> dict[str, Any]:
    """The facts the gate sees before sending ``step``'s command (or its compensation) with
    ``command_input``. An undeclared effect class is a missing fact (no effect_class condition
    holds); compensation_declared and rollback_supported are not facts of an undo."""
    out: dict[str, Any] = {"env": env, "workflow": wf.id, "step": step.id, "approval_present": approval_present,
                           "input": command_input if isinstance(command_input, dict) else {}}
    if step.effect is not None:
        out["effect_class"] = step.effect.value
    if compensation:
        assert step.compensation is not None
        out.update(direction="compensation", topic=step.compensation.topic, side_effect=True)
        return out
    out.update(direction="forward", topic=step.topic or "", side_effect=step.side_effect,
               compensation_declared=step.compensation is not None,
               rollback_supported=step.compensation is not None or not step.side_effect)
    return out
