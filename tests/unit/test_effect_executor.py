"""The side-effect executor's decisions (pure): one key, one request; committed returns the first
result; whatever may have happened is looked up before anything is sent again."""

import pytest

from relay.governance.effects import Found, Record, Step, after_lookup, begin
from relay.governance.lifecycle import EffectState as S

H = "a" * 64


def rec(state, h=H, result=None, error=None, retriable=False):
    return Record("run/pay", h, state, result, error, retriable)


@pytest.mark.parametrize(("record", "step"), [
    (None, Step.SEND),                                   # new
    (rec(S.VALIDATED), Step.SEND),                       # the coordinator's intent: not acted on yet
    (rec(S.APPROVED), Step.SEND),
    (rec(S.COMMITTED, result={"id": 1}), Step.RETURN),   # window 2: the first result
    (rec(S.STARTED), Step.RECONCILE),                    # window 3: it may have happened
    (rec(S.AMBIGUOUS), Step.RECONCILE),
    (rec(S.FAILED, error="card declined"), Step.FAIL),
    (rec(S.FAILED, error="503: try later", retriable=True), Step.SEND),  # nothing happened: sent again
    (rec(S.COMPENSATED), Step.FAIL),
    (rec(S.APPROVAL_REQUIRED), Step.REFUSE),
])
def test_the_first_move_follows_the_record(record, step):
    assert begin(record, "run/pay", H).step is step


def test_the_same_key_with_another_request_is_refused_naming_both_hashes():
    nxt = begin(rec(S.COMMITTED), "run/pay", "b" * 64)
    assert nxt.step is Step.REFUSE and "aaaaaaaaaaaa" in nxt.reason and "bbbbbbbbbbbb" in nxt.reason
    assert begin(rec(S.VALIDATED), "run/pay", "b" * 64).step is Step.REFUSE, "not even before it started"


def test_a_lookup_decides_what_happens_to_an_effect_that_may_have_happened():
    assert after_lookup(Found.YES).step is Step.RETURN
    assert after_lookup(Found.NO).step is Step.SEND
    unknown = after_lookup(Found.UNKNOWN)
    assert unknown.step is Step.FAIL and "ambiguous" in unknown.reason
