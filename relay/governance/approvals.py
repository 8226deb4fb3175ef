"""Approvals bound to what was approved (issue 17), pure: may this decision count?

A request names the run, the step, the hash of the payload to approve (the artifact's version),
why, until when, and who may decide. A decision counts only for that hash, before the expiry,
by someone in scope, while the request is open; with four eyes the run's initiator may not
approve; an action that needs two approvers needs two distinct people (irreversible effects by
default). Each refusal says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from relay.policy.model import EffectClass


class ApprovalState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"


@dataclass(frozen=True)
class ApprovalRequest:
    run_id: str
    step: str
    payload_hash: str              # what is approved: a decision for another payload does not count
    reason: str
    expires_at: float | None       # epoch seconds; None: never
    scope: frozenset[str] = frozenset()  # who may decide; empty: anyone
    initiator: str | None = None   # who started the run
    four_eyes: bool = False        # the initiator may not approve
    approvers_needed: int = 1


def approvers_needed(effect: EffectClass) -> int:
    """Two distinct approvers for an irreversible effect, one otherwise."""
    return 2 if effect is EffectClass.IRREVERSIBLE else 1


@dataclass(frozen=True)
class Decision:
    by: str
    approved: bool
    payload_hash: str
    at: float
    reason: str = ""


@dataclass(frozen=True)
class Outcome:
    counted: bool
    state: ApprovalState           # the request's state after this decision
    refusal: str | None = None     # why it did not count


def state_of(request: ApprovalRequest, counted: Sequence[Decision]) -> ApprovalState:
    """The request's state from the decisions that counted: one denial denies, enough distinct
    approvers approve."""
    if any(not d.approved for d in counted):
        return ApprovalState.DENIED
    if len({d.by for d in counted if d.approved}) >= request.approvers_needed:
        return ApprovalState.APPROVED
    return ApprovalState.PENDING


def decide(request: ApprovalRequest, counted: Sequence[Decision], decision: Decision) -> Outcome:
    """Whether ``decision`` counts, given the decisions that counted before it."""
    current = state_of(request, counted)
    refusal = _refusal(request, counted, decision, current)
    if refusal is not None:
        return Outcome(False, current, f"{decision.by}'s decision on {request.run_id}/{request.step}: {refusal}")
    return Outcome(True, state_of(request, [*counted, decision]))


def _refusal(request: ApprovalRequest, counted: Sequence[Decision], d: Decision,
             current: ApprovalState) -> str | None:
    if current is not ApprovalState.PENDING:
        return f"the request was already {current.value}"
    if d.payload_hash != request.payload_hash:
        return (f"it is for payload {d.payload_hash[:12]}, the request for {request.payload_hash[:12]} "
                "(what was approved is not what would run)")
    if request.expires_at is not None and d.at > request.expires_at:
        return f"it came {d.at - request.expires_at:.0f} s after the request expired"
    if request.scope and d.by not in request.scope:
        return f"{d.by!r} is not among those who may decide: {sorted(request.scope)}"
    if d.approved and request.four_eyes and request.initiator is None:
        return ("four eyes are required and the run's initiator is unknown, so nobody can be told apart from "
                "them (start runs with an initiator)")
    if d.approved and request.four_eyes and d.by == request.initiator:
        return f"{d.by!r} started the run, and four eyes are required"
    if d.approved and any(c.by == d.by and c.approved for c in counted):
        return f"{d.by!r} approved already; {request.approvers_needed} distinct approvers are required"
    return None
