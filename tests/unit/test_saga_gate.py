"""The policy gate inside the pure engine: every decision before every command, forward and
compensation, approvals bound to the payload hash, throttling across runs (no I/O)."""

from __future__ import annotations

import pytest

from relay.policy import build_policy
from relay.saga import RunStatus, StepStatus, build_workflow
from relay.saga.gate import Gate, payload_hash
from relay.saga.state import Approval, Reply, Start
from tests.unit.saga_sim import Sim


def order(ship_effect: str = "external_transaction"):
    return build_workflow({"id": "order", "steps": {
        "charge": {"type": "worker", "topic": "payment.charge", "input": {"amount": "${input.amount}"},
                   "side_effect": True, "effect": "external_transaction",
                   "compensation": {"topic": "payment.refund", "input": {"amount": "${input.amount}"}}},
        "ship": {"type": "worker", "topic": "shipping.ship", "depends_on": ["charge"], "side_effect": True,
                 "effect": ship_effect, "no_rollback_reason": "a parcel cannot be recalled",
                 "input": {"to": "${input.to}"}},
    }})


def gate(*rules, default="allow"):
    return Gate(build_policy({"version": "v1", "default": default, "rules": list(rules)}), env="production")


def begin(sim, input, initiator=None):
    """Start the run and deliver what follows, firing no timer (sim.run fires them when idle)."""
    sim.feed(Start("r1", input, 0.0, initiator=initiator))
    return sim.drain()


def entries(state, outcome):
    return [e for e in state.timeline if e["outcome"] == outcome]


def test_allow_sends_and_the_timeline_names_the_rule_and_the_policy():
    g = gate({"id": "payments-ok", "when": {"topic": "payment.*"}, "decision": "allow"})
    sim = Sim(order(), gate=g)
    state = sim.run({"amount": 5, "to": "x"})
    assert state.status is RunStatus.COMPLETED
    sent = entries(state, "dispatched")
    assert [(e["step"], e["decision"], e["rule"], e["policy"]) for e in sent] == [
        ("charge", "allow", "payments-ok", g.policy.hash[:12]), ("ship", "allow", "(default)", g.policy.hash[:12])]


def test_a_denied_command_is_never_sent_and_what_completed_is_compensated():
    sim = Sim(order(), gate=gate({"id": "no-shipping", "when": {"topic": "shipping.*"}, "decision": "deny"}))
    state = sim.run({"amount": 5, "to": "x"})
    assert [d.step for d in sim.dispatches if not d.compensation] == ["charge"]
    assert state.steps["ship"].status is StepStatus.DENIED
    assert "denied by policy rule no-shipping" in (state.steps["ship"].error or "")
    assert sim.undo_log == [("r1", "charge")] and state.status is RunStatus.COMPENSATED
    assert entries(state, "denied")[0]["rule"] == "no-shipping"


def test_a_denied_compensation_goes_to_the_manual_queue():
    g = gate({"id": "no-refunds", "when": {"direction": "compensation"}, "decision": "deny"})
    sim = Sim(order(), gate=g, behaviour=lambda c: ("fail", "no courier", False) if c.step == "ship" else ("ok", {}))
    state = sim.run({"amount": 5, "to": "x"})
    assert state.status is RunStatus.COMPENSATION_FAILED and not sim.undo_log
    assert "no-refunds" in (state.reason or "")


@pytest.mark.parametrize("decision", ["require_approval", "require_human"])
def test_approval_is_bound_to_the_payload_hash(decision):
    sim = Sim(order(), gate=gate({"id": "ship-needs-ok", "when": {"topic": "shipping.ship"}, "decision": decision}))
    state = begin(sim, {"amount": 5, "to": "Oslo"})
    assert state.status is RunStatus.AWAITING_APPROVAL and state.steps["ship"].status is StepStatus.WAITING
    [request] = sim.requests
    a = payload_hash("shipping.ship", {"to": "Oslo"})
    assert request.gate is not None and request.gate["hash"] == a and request.gate["rule"] == "ship-needs-ok"
    sim.feed(Approval("ship", True, 1.0, by="ann", payload_hash=payload_hash("shipping.ship", {"to": "Paris"})))
    assert [d.step for d in sim.dispatches] == ["charge"], "an approval of another payload sends nothing"
    assert "the request for " + a[:12] in entries(sim.state, "approval refused")[0]["error"]
    sim.feed(Approval("ship", True, 2.0, by="ann", payload_hash=a))
    state = sim.drain()
    assert [d.step for d in sim.dispatches] == ["charge", "ship"] and state.status is RunStatus.COMPLETED


def test_four_eyes_and_two_distinct_approvers_for_an_irreversible_effect():
    rule = {"id": "deletes", "when": {"effect_class": "irreversible"}, "decision": "require_approval",
            "approval": {"four_eyes": True, "scope": ["ann", "bob", "cy"]}}
    sim = Sim(order(ship_effect="irreversible"), gate=gate(rule))
    begin(sim, {"amount": 5, "to": "x"}, initiator="ann")
    h = sim.requests[0].gate["hash"]
    assert sim.requests[0].gate["needed"] == 2
    for by in ("ann", "dan", "bob", "bob"):  # the initiator; out of scope; counted; the same person again
        sim.feed(Approval("ship", True, 1.0, by=by, payload_hash=h))
    refusals = [e["error"] for e in entries(sim.state, "approval refused")]
    assert len(refusals) == 3 and "four eyes" in refusals[0] and "'dan' is not among" in refusals[1]
    assert "approved already" in refusals[2] and sim.state.steps["ship"].status is StepStatus.WAITING
    sim.feed(Approval("ship", True, 2.0, by="cy", payload_hash=h))
    state = sim.drain()
    assert state.status is RunStatus.COMPLETED and entries(state, "approved by cy (2 of 2)")


def test_an_expired_request_denies_or_escalates_once():
    rule = {"id": "ok", "when": {"topic": "shipping.ship"}, "decision": "require_approval",
            "approval": {"timeout_sec": 60, "scope": ["ann"], "on_expiry": "escalate", "escalate_to": ["lead"]}}
    sim = Sim(order(), gate=gate(rule))
    begin(sim, {"amount": 5, "to": "x"})
    [expiry] = [t for t in sim.timers if t.endswith("/expiry")]
    sim.fire(expiry)
    assert [r.gate["scope"] for r in sim.requests] == [["ann"], ["lead"]]
    h = sim.requests[0].gate["hash"]
    sim.feed(Approval("ship", True, sim.now, by="ann", payload_hash=h))
    assert "'ann' is not among" in entries(sim.state, "approval refused")[0]["error"]
    [expiry] = [t for t in sim.timers if t.endswith("/escalated/expiry")]
    sim.fire(expiry)
    state = sim.drain()
    assert state.steps["ship"].status is StepStatus.DENIED and "expired" in (state.steps["ship"].error or "")
    assert state.status is RunStatus.COMPENSATED


def test_a_denial_by_an_approver_denies_the_step():
    sim = Sim(order(), gate=gate({"id": "ok", "when": {"topic": "shipping.ship"}, "decision": "require_approval"}))
    begin(sim, {"amount": 5, "to": "x"})
    sim.feed(Approval("ship", False, 1.0, by="ann", reason="wrong address", payload_hash=sim.requests[0].gate["hash"]))
    state = sim.drain()
    assert state.steps["ship"].error == "denied by ann: wrong address" and state.status is RunStatus.COMPENSATED


def test_a_compensation_awaiting_approval_holds_the_rollback_window_open():
    rule = {"id": "refunds", "when": {"direction": "compensation"}, "decision": "require_approval",
            "approval": {"timeout_sec": 600}}
    sim = Sim(order(), gate=gate(rule), behaviour=lambda c: ("fail", "no", False) if c.step == "ship" else ("ok", {}))
    state = begin(sim, {"amount": 5, "to": "x"})
    assert state.status is RunStatus.COMPENSATING and not sim.undo_log
    [window] = [t for t in sim.timers if "/rollback/" in t]
    sim.fire(window)  # 30 s later: still waiting for the approver, not compensation_failed
    assert sim.state.status is RunStatus.COMPENSATING and entries(sim.state, "rollback window extended: "
                                                                           "a compensation awaits approval")
    [request] = [r for r in sim.requests if r.gate["compensation"]]
    sim.feed(Approval("charge", True, sim.now, by="ann", payload_hash=request.gate["hash"]))
    state = sim.drain()
    assert sim.undo_log == [("r1", "charge")] and state.status is RunStatus.COMPENSATED


def test_throttle_across_runs_sends_the_burst_then_one_per_interval_on_held_slots():
    g = gate({"id": "ship-rate", "when": {"topic": "shipping.ship"}, "decision": "throttle",
              "throttle": {"rate_per_sec": 2, "burst": 2, "key": "topic"}})
    wf, buckets, sent_at = order(), {}, []
    for i in range(5):  # five runs at t=0, one bucket: slots 0, 0, 0.5, 1.0, 1.5
        sim = Sim(wf, gate=g, buckets=buckets)
        sim.run({"amount": i, "to": "x"}, run_id=f"r{i}")
        state = sim.state
        assert state.status is RunStatus.COMPLETED
        ship = next(d for d in sim.dispatches if d.step == "ship")
        sent_at.append([e["at"] for e in state.timeline if e["outcome"] == "dispatched" and e["step"] == "ship"][-1])
        assert ship.command_id == f"r{i}/ship/1", "one attempt: a throttled command is delayed, not failed"
        assert (ship.bucket is None) == (i >= 2), "the burst takes its slots as sent; later ones go on held slots"
    assert sent_at == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.5])
    assert buckets == {"ship-rate:shipping.ship": pytest.approx(2.5)}


def test_without_a_gate_nothing_changes():
    sim = Sim(order())
    state = sim.run({"amount": 5, "to": "x"})
    assert state.status is RunStatus.COMPLETED and "decision" not in entries(state, "dispatched")[0]
    assert sim.gate is None and not state.gates


def test_a_reply_to_a_throttled_command_is_not_expected_before_it_is_sent():
    g = gate({"id": "t", "when": {"topic": "payment.charge"}, "decision": "throttle",
              "throttle": {"rate_per_sec": 1, "burst": 1, "key": "topic"}})
    buckets = {"t:payment.charge": 10.0}  # the queue is 10 s long
    sim = Sim(order(), gate=g, buckets=buckets, behaviour=lambda c: ("silent",))
    begin(sim, {"amount": 5, "to": "x"})
    assert not sim.dispatches and sim.state.inflight == {}
    sim.feed(Reply("r1/charge/1", True, 1.0))  # a stray reply: nothing was sent
    assert sim.state.steps["charge"].status is StepStatus.RUNNING
