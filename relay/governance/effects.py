"""What a participant does with a command that acts on the outside world, given the effect's
record (issue 17, the side-effects article's executor), pure: the adapter
(:mod:`relay.saga.effects`) reads the record, asks this, and does what it says.

The record is keyed by the command's idempotency key (stable across a step's attempts) and
bound to the request's hash: the same key with another payload is refused, never sent. Before
the outside call the record says ``started`` in a transaction of its own, so that a crash
between the call and its recording leaves a trace: the next attempt then asks the target
(``lookup``) instead of sending again. A call that times out after sending is ``ambiguous``,
resolved the same way. What the lookup cannot tell stays ambiguous, escalated to a person
(``relay effects list --state ambiguous``), and is never sent blindly.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from relay.governance.lifecycle import EffectState

SENDABLE = frozenset({EffectState.PROPOSED, EffectState.VALIDATED, EffectState.APPROVED})  # intent, not yet acted on


class Step(StrEnum):
    SEND = "send"            # record started (own transaction), then call the target
    RETURN = "return"        # it happened: answer with the stored result, send nothing
    FAIL = "fail"            # it failed for good (or was refused): answer with the stored failure
    RECONCILE = "reconcile"  # it may have happened: look it up first
    REFUSE = "refuse"        # another request under this key: answer with a failure, send nothing


@dataclass(frozen=True)
class Record:
    key: str
    request_hash: str
    state: EffectState
    result: Any = None
    error: str | None = None
    retriable: bool = False  # failed for now (nothing happened): a later attempt may send again


@dataclass(frozen=True)
class Next:
    step: Step
    reason: str = ""


def begin(record: Record | None, key: str, request_hash: str) -> Next:
    """The first move for a command with ``key`` and ``request_hash``, given the stored record."""
    if record is None or (record.state in SENDABLE and record.request_hash == request_hash):
        return Next(Step.SEND)
    if record.request_hash != request_hash:
        return Next(Step.REFUSE, f"idempotency key {key!r} was used for request {record.request_hash[:12]}; this "
                                 f"command's request is {request_hash[:12]}: one key, one request (nothing was sent)")
    if record.state is EffectState.COMMITTED:
        return Next(Step.RETURN, "it happened already: the first result")
    if record.state is EffectState.FAILED and record.retriable:
        return Next(Step.SEND, "it failed for now, and nothing happened: sent again")
    if record.state in (EffectState.FAILED, EffectState.COMPENSATED):
        return Next(Step.FAIL, record.error or f"the effect is {record.state.value}")
    if record.state is EffectState.APPROVAL_REQUIRED:
        return Next(Step.REFUSE, f"the effect under {key!r} awaits approval; it may not start")
    return Next(Step.RECONCILE, f"it was {record.state.value}: it may have happened, so the target is asked first")


class Found(StrEnum):
    YES = "yes"          # the target has it: committed
    NO = "no"            # the target never got it: safe to send (again)
    UNKNOWN = "unknown"  # the target cannot tell: ambiguous, escalated


def after_lookup(found: Found) -> Next:
    if found is Found.YES:
        return Next(Step.RETURN, "reconciled: the target has it")
    if found is Found.NO:
        return Next(Step.SEND, "reconciled: the target never got it")
    return Next(Step.FAIL, "reconciliation could not tell whether it happened: it stays ambiguous for a person "
                           "(the step fails retriably, and is compensated if the run fails)")
