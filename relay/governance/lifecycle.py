"""A side effect's lifecycle (issue 17): the states a side-effect record goes through and the
only moves between them. Intent (proposed, validated, approval) stays apart from the effect
(started, committed); an illegal move is refused naming both states.

    proposed -> validated -> [approval_required -> approved ->] started -> committed
                                                                       -> failed
                                                                       -> ambiguous -> committed | failed
                                                                          (| started: the target never got it)
    committed -> compensated;  any state before started -> failed (denied, expired, invalid)
    failed -> started: only when it failed retriably (the target refused for now: nothing happened)
"""

from __future__ import annotations

from enum import StrEnum

from relay.errors import RelayError


class EffectState(StrEnum):
    PROPOSED = "proposed"                   # an intent, recorded with the command
    VALIDATED = "validated"                 # input and policy checked
    APPROVAL_REQUIRED = "approval_required"
    APPROVED = "approved"                   # bound to the payload hash that was approved
    STARTED = "started"                     # the participant is acting on it
    COMMITTED = "committed"                 # the effect happened
    FAILED = "failed"                       # it did not happen (refused, denied, expired, failed)
    AMBIGUOUS = "ambiguous"                 # sent, outcome unknown: reconcile, never retry blindly
    COMPENSATED = "compensated"             # undone by its compensation


MOVES: dict[EffectState, frozenset[EffectState]] = {
    EffectState.PROPOSED: frozenset({EffectState.VALIDATED, EffectState.FAILED}),
    EffectState.VALIDATED: frozenset({EffectState.APPROVAL_REQUIRED, EffectState.STARTED, EffectState.FAILED}),
    EffectState.APPROVAL_REQUIRED: frozenset({EffectState.APPROVED, EffectState.FAILED}),
    EffectState.APPROVED: frozenset({EffectState.STARTED, EffectState.FAILED}),
    EffectState.STARTED: frozenset({EffectState.COMMITTED, EffectState.FAILED, EffectState.AMBIGUOUS}),
    # by reconciliation: the target has it, refused it, or never got it (then it is sent again)
    EffectState.AMBIGUOUS: frozenset({EffectState.COMMITTED, EffectState.FAILED, EffectState.STARTED}),
    EffectState.COMMITTED: frozenset({EffectState.COMPENSATED}),
    EffectState.FAILED: frozenset({EffectState.STARTED}),  # only after a retriable refusal: nothing happened
    EffectState.COMPENSATED: frozenset(),
}
FINAL = frozenset(s for s, nexts in MOVES.items() if not nexts)


class IllegalTransition(RelayError):
    """A side effect was asked to move where its lifecycle does not go (never retriable)."""

    def __init__(self, effect: str, current: EffectState, wanted: EffectState) -> None:
        self.effect, self.current, self.wanted = effect, current, wanted
        allowed = sorted(s.value for s in MOVES[current]) or "nothing: it is final"
        super().__init__(f"side effect {effect}: {current.value} -> {wanted.value} is not a move of its lifecycle; "
                         f"from {current.value} it may go to {allowed}", retriable=False)


def advance(effect: str, current: EffectState, wanted: EffectState) -> EffectState:
    """``wanted`` if the lifecycle allows it from ``current``; IllegalTransition naming both if not.
    Moving to the state it is in is not a move (a repeated command is dropped before this)."""
    if wanted not in MOVES[current]:
        raise IllegalTransition(effect, current, wanted)
    return wanted
