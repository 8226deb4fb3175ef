"""The policy gate's data: decisions, effect classes, rules and their conditions (no I/O).

A policy is an ordered list of rules; the first rule whose every condition holds decides, and a
policy's ``default`` decides when none does. Every verdict names the rule and the policy's
content hash, so evidence can say which version of which rule let an action through.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class EffectClass(StrEnum):
    """What an action does to the world, from harmless to irreversible."""

    NONE = "none"                                    # pure computation
    READ = "read"                                    # reads, changes nothing
    DRAFT = "draft"                                  # a non-final artifact (a draft notice)
    INTERNAL_WRITE = "internal_write"                # our own state; compensable by us
    EXTERNAL_NOTIFICATION = "external_notification"  # a message that cannot be unsent
    EXTERNAL_TRANSACTION = "external_transaction"    # a payment, a booking: compensable by a new action
    IRREVERSIBLE = "irreversible"                    # a deletion, a production rollback
    META = "meta"                                    # acts on the workflow itself (cancel, approve)


class Decision(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    REQUIRE_APPROVAL = "require_approval"
    THROTTLE = "throttle"  # allow, at most at the rule's rate per key (a token bucket), else later


# the spelling of the compensation article's example policy
DECISION_ALIASES = {"require_human": Decision.REQUIRE_APPROVAL}


class Op(StrEnum):
    EQ = "eq"    # equal (a list of values in the YAML: one of them)
    IN = "in"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"


# the facts a condition may name, with the type of their values; ``input.<path>`` names a field
# of the step's input (any JSON value)
FACTS: dict[str, type] = {
    "env": str,                     # the deployment (RELAY_POLICY_ENV): production, staging...
    "workflow": str,
    "step": str,
    "topic": str,                   # the command's topic; a value may be a glob: payments.*
    "direction": str,               # forward | compensation
    "effect_class": str,            # an EffectClass
    "side_effect": bool,
    "compensation_declared": bool,  # the step declares a compensation
    "rollback_supported": bool,     # ... or can otherwise be undone (not irreversible)
    "approval_present": bool,       # an approval bound to this payload was granted
    "amount": float,                # input.amount, when a number
}
DIRECTIONS = ("forward", "compensation")


@dataclass(frozen=True)
class Condition:
    fact: str         # a key of FACTS or input.<path>
    op: Op
    value: Any        # for IN: a tuple


@dataclass(frozen=True)
class Throttle:
    """A token bucket per key: ``rate_per_sec`` tokens a second, at most ``burst`` saved up. The
    key names a fact (``topic``, ``workflow``) or an input field (``input.tenant``): one bucket
    per value, shared by every run."""

    rate_per_sec: float
    burst: int
    key: str          # a fact name or input.<path>: one bucket per value


class OnExpiry(StrEnum):
    DENY = "deny"          # an approval request that expires denies the action
    ESCALATE = "escalate"  # ... is asked again of ``escalate_to``, once; a second expiry denies


DEFAULT_APPROVAL_TIMEOUT_S = 24 * 3600.0


@dataclass(frozen=True)
class ApprovalTerms:
    """Who may approve a ``require_approval`` action and until when. ``approvers`` None: two
    distinct people for an irreversible effect, one otherwise."""

    scope: tuple[str, ...] = ()     # who may decide; empty: anyone
    four_eyes: bool = False         # the run's initiator may not approve
    approvers: int | None = None
    timeout_s: float = DEFAULT_APPROVAL_TIMEOUT_S
    on_expiry: OnExpiry = OnExpiry.DENY
    escalate_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    id: str
    when: tuple[Condition, ...]
    decision: Decision
    throttle: Throttle | None = None
    description: str = ""
    approval: ApprovalTerms | None = None  # require_approval: the request's terms (None: the defaults)


@dataclass(frozen=True)
class Policy:
    version: str
    rules: tuple[Rule, ...]
    default: Decision
    hash: str         # sha256 of the canonical document: verdicts name it


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    rule_id: str | None   # None: the policy's default decided
    policy_hash: str
    throttle: Throttle | None = None
    bucket: str | None = None  # THROTTLE: the bucket this action draws from (rule id + key value)
    approval: ApprovalTerms | None = None  # REQUIRE_APPROVAL: the rule's terms (None: the defaults)
