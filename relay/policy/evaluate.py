"""Decide an action under a policy (sans I/O): first matching rule wins, else the default.

    verdict = evaluate(policy, {"env": "production", "topic": "payments.charge", "side_effect": True,
                                "compensation_declared": False, "input": {"amount": 120}})

A condition on a fact the action does not have does not hold (a rule about amounts never
matches an action without one). Topic values may be globs (``payments.*``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

from relay.policy.model import Condition, Decision, Op, Policy, Verdict

_MISSING = object()


def fact(facts: Mapping[str, Any], name: str) -> Any:
    """The value of ``name`` (a fact, or ``input.a.b``: a field of the input); _MISSING if absent."""
    if not name.startswith("input."):
        if name == "amount" and "amount" not in facts:
            return fact(facts, "input.amount")
        return facts.get(name, _MISSING)
    value: Any = facts.get("input", _MISSING)
    for part in name.split(".")[1:]:
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def holds(c: Condition, facts: Mapping[str, Any]) -> bool:
    value = fact(facts, c.fact)
    if value is _MISSING:
        return False
    if c.op is Op.IN:
        return any(_equal(c.fact, value, v) for v in c.value)
    if c.op is Op.EQ:
        return _equal(c.fact, value, c.value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False  # an order comparison holds only for numbers
    bound = float(c.value)
    return {Op.GT: value > bound, Op.GTE: value >= bound, Op.LT: value < bound, Op.LTE: value <= bound}[c.op]


def _equal(name: str, value: Any, wanted: Any) -> bool:
    if name == "topic" and isinstance(value, str) and isinstance(wanted, str):
        return fnmatch.fnmatchcase(value, wanted)
    if isinstance(value, bool) or isinstance(wanted, bool):
        return value is wanted
    return bool(value == wanted)


def evaluate(policy: Policy, facts: Mapping[str, Any]) -> Verdict:
    """The verdict on one action: the first rule whose conditions all hold, else the default."""
    for rule in policy.rules:
        if all(holds(c, facts) for c in rule.when):
            bucket = None
            if rule.decision is Decision.THROTTLE and rule.throttle is not None:
                key = fact(facts, rule.throttle.key)
                bucket = f"{rule.id}:{'' if key is _MISSING else key}"
            return Verdict(rule.decision, rule.id, policy.hash, rule.throttle, bucket, rule.approval)
    return Verdict(policy.default, None, policy.hash)
