"""Build a :class:`~relay.policy.model.Policy` from YAML or a mapping, every problem at once.

    version: v1
    default: deny                   # optional: allow | deny | require_approval (default: deny)
    rules:
      - id: require-compensation-for-prod-writes
        when: {env: production, side_effect: true, compensation_declared: false}
        decision: require_human     # = require_approval
      - id: big-payments
        when: {topic: "payments.*", amount: {gt: 1000}}
        decision: require_approval
      - id: refunds-per-tenant
        when: {topic: payments.refund}
        decision: throttle
        throttle: {rate_per_sec: 5, burst: 10, key: input.tenant}
      - id: prod-rollbacks
        when: {topic: job.sre.rollback, env: production}
        decision: require_approval
        approval: {scope: [alice, bob], four_eyes: true, approvers: 2, timeout_sec: 3600,
                   on_expiry: escalate, escalate_to: [sre-lead]}
      - id: the rest
        when: {}
        decision: allow

A ``when`` value is a scalar (equal), a list (one of), or for numbers a mapping of gt/gte/lt/lte.
Each problem names the rule, the field, the value and what was expected (PolicyError).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from relay.documents import Problems, read_yaml
from relay.errors import PolicyError
from relay.policy.model import (
    DECISION_ALIASES,
    DEFAULT_APPROVAL_TIMEOUT_S,
    DIRECTIONS,
    FACTS,
    ApprovalTerms,
    Condition,
    Decision,
    EffectClass,
    OnExpiry,
    Op,
    Policy,
    Rule,
    Throttle,
)

VERSIONS = ("v1",)
POLICY_KEYS = {"version", "default", "rules", "description"}
RULE_KEYS = {"id", "when", "decision", "throttle", "approval", "description"}
THROTTLE_KEYS = {"rate_per_sec", "burst", "key"}
APPROVAL_KEYS = {"scope", "four_eyes", "approvers", "timeout_sec", "on_expiry", "escalate_to"}
DEFAULT_DECISION = Decision.DENY  # a policy lists what may happen; `default: allow` for a blocklist


def load_policy(source: str | Path) -> Policy:
    """A policy from YAML text or a path to a YAML file."""
    doc = read_yaml(source, by="relay.policy.load_policy", error=PolicyError)
    return build_policy(doc, name=str(source)[:60] if isinstance(source, Path) else "policy")


def build_policy(doc: Any, *, name: str = "policy") -> Policy:
    """A validated policy from a mapping; raises PolicyError listing every problem."""
    if not isinstance(doc, Mapping):
        raise PolicyError(name, [f"the policy is a {type(doc).__name__}; expected a mapping with version and rules"])
    p = Problems(label="")  # where: "rule 2 (id)"
    for key in sorted(set(doc) - POLICY_KEYS):
        p.add(None, key, doc[key], f"one of {sorted(POLICY_KEYS)}")
    if doc.get("version") not in VERSIONS:
        p.add(None, "version", doc.get("version"), f"one of {list(VERSIONS)}")
    default = _decision(p, None, "default", doc.get("default", DEFAULT_DECISION.value))
    if default is Decision.THROTTLE:
        p.add(None, "default", doc.get("default"), "allow, deny or require_approval (a throttle needs a rule)")
    raw_rules = doc.get("rules")
    rules: list[Rule] = []
    if not isinstance(raw_rules, list):
        p.add(None, "rules", raw_rules, "a list of rules (id, when, decision)")
    else:
        seen: set[str] = set()
        for n, raw in enumerate(raw_rules):
            rule = _rule(p, n, raw)
            if rule is not None and rule.id in seen:
                p.add(_where(n, rule.id), "id", rule.id, "an id no other rule has")
            elif rule is not None:
                seen.add(rule.id)
                rules.append(rule)
    if p:
        raise PolicyError(name, p.lines)
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return Policy(str(doc["version"]), tuple(rules), default or DEFAULT_DECISION,
                  hashlib.sha256(canonical.encode()).hexdigest())


def _where(n: int, rule_id: Any) -> str:
    return f"rule {n + 1}" + (f" ({rule_id})" if isinstance(rule_id, str) and rule_id else "")


def _rule(p: Problems, n: int, raw: Any) -> Rule | None:
    if not isinstance(raw, Mapping):
        p.add(f"rule {n + 1}", "rule", raw, "a mapping with id, when and decision")
        return None
    rid, where = raw.get("id"), _where(n, raw.get("id"))
    if not isinstance(rid, str) or not rid.strip():
        p.add(where, "id", rid, "a non-empty string (verdicts and evidence name it)")
    for key in sorted(set(raw) - RULE_KEYS):
        p.add(where, key, raw[key], f"one of {sorted(RULE_KEYS)}")
    when = raw.get("when", {})
    conditions: list[Condition] = []
    if not isinstance(when, Mapping):
        p.add(where, "when", when, "a mapping of fact -> value ({} matches every action)")
    else:
        for fact_name, value in when.items():
            c = _condition(p, where, str(fact_name), value)
            if c is not None:
                conditions.append(c)
    decision = _decision(p, where, "decision", raw.get("decision"))
    throttle = _throttle(p, where, raw.get("throttle"))
    if decision is Decision.THROTTLE and throttle is None and raw.get("throttle") is None:
        p.add(where, "throttle", None, "{rate_per_sec, burst, key} with decision throttle")
    if decision is not Decision.THROTTLE and raw.get("throttle") is not None:
        p.add(where, "throttle", raw.get("throttle"), "no throttle unless the decision is throttle")
    approval = _approval(p, where, raw.get("approval"))
    if decision is not Decision.REQUIRE_APPROVAL and raw.get("approval") is not None:
        p.add(where, "approval", raw.get("approval"), "no approval terms unless the decision is require_approval")
    if not isinstance(rid, str):  # reported above; nothing to name the rule by
        return None
    return Rule(str(rid), tuple(conditions), decision or DEFAULT_DECISION, throttle, str(raw.get("description") or ""),
                approval)


def _decision(p: Problems, where: str | None, field: str, raw: Any) -> Decision | None:
    if isinstance(raw, str) and raw in DECISION_ALIASES:
        return DECISION_ALIASES[raw]
    try:
        return Decision(str(raw))
    except ValueError:
        p.add(where, field, raw, f"one of {[d.value for d in Decision] + sorted(DECISION_ALIASES)}")
        return None


def _condition(p: Problems, where: str, name: str, raw: Any) -> Condition | None:
    if name not in FACTS and not (name.startswith("input.") and len(name) > len("input.")):
        p.add(where, f"when.{name}", raw, f"a condition on one of {sorted(FACTS)} or input.<field>")
        return None
    if isinstance(raw, Mapping):
        if len(raw) != 1 or next(iter(raw)) not in ("gt", "gte", "lt", "lte"):
            p.add(where, f"when.{name}", raw, "one comparison: {gt|gte|lt|lte: number}")
            return None
        op, bound = next(iter(raw.items()))
        if isinstance(bound, bool) or not isinstance(bound, (int, float)):
            p.add(where, f"when.{name}.{op}", bound, "a number")
            return None
        if name in FACTS and FACTS[name] is not float:
            p.add(where, f"when.{name}", raw, f"a {FACTS[name].__name__}: comparisons are for amount and input fields")
            return None
        return Condition(name, Op(op), bound)
    values = list(raw) if isinstance(raw, list) else [raw]
    for v in values:
        _check_value(p, where, name, v)
    return Condition(name, Op.IN, tuple(values)) if isinstance(raw, list) else Condition(name, Op.EQ, raw)


def _check_value(p: Problems, where: str, name: str, v: Any) -> None:
    kind = FACTS.get(name)
    if kind is bool and not isinstance(v, bool):
        p.add(where, f"when.{name}", v, "true or false")
    elif kind is str and not isinstance(v, str):
        p.add(where, f"when.{name}", v, "a string")
    elif kind is float and (isinstance(v, bool) or not isinstance(v, (int, float))):
        p.add(where, f"when.{name}", v, "a number, or {gt|gte|lt|lte: number}")
    elif name == "effect_class" and v not in {e.value for e in EffectClass}:
        p.add(where, "when.effect_class", v, f"one of {[e.value for e in EffectClass]}")
    elif name == "direction" and v not in DIRECTIONS:
        p.add(where, "when.direction", v, f"one of {list(DIRECTIONS)}")


def _throttle(p: Problems, where: str, raw: Any) -> Throttle | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        p.add(where, "throttle", raw, "{rate_per_sec, burst, key}")
        return None
    for key in sorted(set(raw) - THROTTLE_KEYS):
        p.add(where, f"throttle.{key}", raw[key], f"one of {sorted(THROTTLE_KEYS)}")
    rate, burst, key = raw.get("rate_per_sec"), raw.get("burst", 1), raw.get("key", "topic")
    ok = True
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
        p.add(where, "throttle.rate_per_sec", rate, "a number > 0")
        ok = False
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        p.add(where, "throttle.burst", burst, "an integer >= 1")
        ok = False
    if not isinstance(key, str) or (key not in FACTS and not key.startswith("input.")):
        p.add(where, "throttle.key", key, f"one of {sorted(FACTS)} or input.<field> (one bucket per value)")
        ok = False
    return Throttle(float(rate), int(burst), str(key)) if ok else None  # type: ignore[arg-type]


def _names(p: Problems, where: str, field: str, raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(n, str) and n for n in raw):
        p.add(where, field, raw, "a list of names (who may decide)")
        return ()
    return tuple(raw)


def _approval(p: Problems, where: str, raw: Any) -> ApprovalTerms | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        p.add(where, "approval", raw, f"a mapping of {sorted(APPROVAL_KEYS)}")
        return None
    before = len(p.lines)
    for key in sorted(set(raw) - APPROVAL_KEYS):
        p.add(where, f"approval.{key}", raw[key], f"one of {sorted(APPROVAL_KEYS)}")
    scope = _names(p, where, "approval.scope", raw.get("scope", []))
    escalate_to = _names(p, where, "approval.escalate_to", raw.get("escalate_to", []))
    four_eyes, approvers = raw.get("four_eyes", False), raw.get("approvers")
    timeout, on_expiry = raw.get("timeout_sec", DEFAULT_APPROVAL_TIMEOUT_S), raw.get("on_expiry", OnExpiry.DENY.value)
    if not isinstance(four_eyes, bool):
        p.add(where, "approval.four_eyes", four_eyes, "true or false")
    if approvers is not None and (isinstance(approvers, bool) or not isinstance(approvers, int) or approvers < 1):
        p.add(where, "approval.approvers", approvers, "an integer >= 1 (distinct approvers)")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        p.add(where, "approval.timeout_sec", timeout, "a number of seconds > 0")
    if on_expiry not in {e.value for e in OnExpiry}:
        p.add(where, "approval.on_expiry", on_expiry, f"one of {[e.value for e in OnExpiry]}")
    elif on_expiry == OnExpiry.ESCALATE.value and not escalate_to:
        p.add(where, "approval.escalate_to", raw.get("escalate_to"), "the names to ask when on_expiry is escalate")
    if len(p.lines) > before:
        return None
    return ApprovalTerms(scope, four_eyes, approvers, float(timeout), OnExpiry(on_expiry), escalate_to)
