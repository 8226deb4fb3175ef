"""Approvals bound to a payload hash, without I/O: each refusal of the issue, with its reason."""

from relay.governance.approvals import ApprovalRequest, ApprovalState, Decision, approvers_needed, decide, state_of
from relay.policy.model import EffectClass

A, B = "a" * 64, "b" * 64
REQ = ApprovalRequest("run1", "rollback", A, "production rollback", expires_at=100.0,
                      scope=frozenset({"ann", "bob", "cy"}), initiator="cy", four_eyes=True)


def test_an_approval_bound_to_hash_a_is_refused_for_hash_b():
    out = decide(REQ, [], Decision("ann", True, B, at=10.0))
    assert not out.counted and out.state is ApprovalState.PENDING
    assert "it is for payload bbbbbbbbbbbb, the request for aaaaaaaaaaaa" in out.refusal
    assert decide(REQ, [], Decision("ann", True, A, at=10.0)).state is ApprovalState.APPROVED


def test_expired_out_of_scope_initiator_and_already_decided_are_refused_with_the_reason():
    assert "after the request expired" in decide(REQ, [], Decision("ann", True, A, at=101.0)).refusal
    assert "'eve' is not among those who may decide" in decide(REQ, [], Decision("eve", True, A, at=1.0)).refusal
    assert "'cy' started the run, and four eyes are required" in decide(REQ, [], Decision("cy", True, A, 1.0)).refusal
    done = [Decision("ann", True, A, 1.0)]
    assert "already approved" in decide(REQ, done, Decision("bob", False, A, 2.0)).refusal
    denied = [Decision("bob", False, A, 1.0)]
    assert state_of(REQ, denied) is ApprovalState.DENIED
    assert "already denied" in decide(REQ, denied, Decision("ann", True, A, 2.0)).refusal


def test_two_distinct_approvers_for_an_irreversible_effect():
    req = ApprovalRequest("run1", "delete", A, "delete the bucket", None,
                          approvers_needed=approvers_needed(EffectClass.IRREVERSIBLE))
    first = decide(req, [], Decision("ann", True, A, 1.0))
    assert first.counted and first.state is ApprovalState.PENDING
    again = decide(req, [Decision("ann", True, A, 1.0)], Decision("ann", True, A, 2.0))
    assert not again.counted and "'ann' approved already; 2 distinct approvers are required" in again.refusal
    second = decide(req, [Decision("ann", True, A, 1.0)], Decision("bob", True, A, 3.0))
    assert second.counted and second.state is ApprovalState.APPROVED
    assert approvers_needed(EffectClass.EXTERNAL_TRANSACTION) == 1
