"""A side effect's lifecycle without I/O: every allowed move, every other one refused by name."""

import itertools

import pytest

from relay.governance.lifecycle import FINAL, MOVES, EffectState, IllegalTransition, advance

S = EffectState


def test_the_happy_paths_of_the_issue():
    for path in ([S.PROPOSED, S.VALIDATED, S.STARTED, S.COMMITTED, S.COMPENSATED],
                 [S.PROPOSED, S.VALIDATED, S.APPROVAL_REQUIRED, S.APPROVED, S.STARTED, S.AMBIGUOUS, S.COMMITTED],
                 [S.PROPOSED, S.VALIDATED, S.APPROVAL_REQUIRED, S.FAILED],
                 [S.PROPOSED, S.VALIDATED, S.STARTED, S.AMBIGUOUS, S.FAILED]):
        state = path[0]
        for nxt in path[1:]:
            state = advance("e1", state, nxt)
        assert state is path[-1]


def test_every_other_move_is_refused_naming_both_states():
    refused = 0
    for current, wanted in itertools.product(S, S):
        if wanted in MOVES[current]:
            continue
        with pytest.raises(IllegalTransition) as err:
            advance("e7", current, wanted)
        assert f"side effect e7: {current.value} -> {wanted.value}" in str(err.value)
        assert not err.value.retriable
        refused += 1
    assert refused == 81 - sum(len(m) for m in MOVES.values())
    assert FINAL == {S.COMPENSATED}  # failed may start again, only after a retriable refusal
    # intent never jumps to the effect: no way from proposed or approval_required to committed
    assert S.COMMITTED not in MOVES[S.PROPOSED] | MOVES[S.APPROVAL_REQUIRED] | MOVES[S.VALIDATED]
