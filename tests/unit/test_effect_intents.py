"""The coordinator's side-effect intents (pure): which commands get a record, in which state, and
what a compensation or a denial does to it; one row per key per statement."""

from relay.policy import build_policy
from relay.saga import build_workflow
from relay.saga.gate import Gate, payload_hash
from relay.saga.intents import ALLOWED, intents, merged
from relay.saga.state import Approval, Start
from tests.unit.saga_sim import Sim

WF = build_workflow({"id": "o", "steps": {
    "charge": {"type": "worker", "topic": "pay.charge", "input": {"amount": "${input.amount}"}, "side_effect": True,
               "effect": "external_transaction", "compensation": {"topic": "pay.refund"}},
    "look": {"type": "worker", "topic": "crm.look", "depends_on": ["charge"], "effect": "read"},
    "ship": {"type": "worker", "topic": "ship.ship", "depends_on": ["look"]},
}})




def test_declared_changing_steps_get_an_intent_bound_to_their_payload():
    sim = Sim(WF, behaviour=lambda c: ("fail", "no", False) if c.step == "ship" else ("ok", {}))
    state = sim.run({"amount": 5})
    rows, compensated = intents(WF, None, state, sim.dispatches, "coord")
    assert [(r["step"], r["state"], r["class"]) for r in rows] == [("charge", "validated", "external_transaction")]
    assert rows[0]["hash"] == payload_hash("pay.charge", {"amount": 5}) and rows[0]["actor"] == "coord"
    assert compensated == ["r1/charge"], "read and undeclared steps have no record; the charge was refunded"


def test_approval_required_then_approved_merge_into_one_row_of_the_key():
    gate = Gate(build_policy({"version": "v1", "default": "allow", "rules": [
        {"id": "ok", "when": {"topic": "pay.charge"}, "decision": "require_approval"}]}))
    sim = Sim(WF, gate=gate)
    sim.feed(Start("r1", {"amount": 5}, 0.0))
    asked, _ = intents(WF, None, sim.state, [sim.requests[0]], "coord")
    assert [r["state"] for r in asked] == ["approval_required"]
    before = sim.state
    commands_at = len(sim.dispatches)
    sim.feed(Approval("charge", True, 1.0, by="cfo", payload_hash=sim.requests[0].gate["hash"]))
    granted, _ = intents(WF, before, sim.state, sim.dispatches[commands_at:], "coord")
    [row] = merged(asked + granted)
    assert row["state"] == "approved" and [h["state"] for h in row["history"]] == [
        "proposed", "validated", "approval_required", "approved"]
    assert "approval_required>approved" in ALLOWED and "started>validated" not in ALLOWED


def test_a_denied_command_has_a_failed_record():
    gate = Gate(build_policy({"version": "v1", "default": "allow", "rules": [
        {"id": "no", "when": {"topic": "pay.charge"}, "decision": "deny"}]}))
    sim = Sim(WF, gate=gate)
    state = sim.run({"amount": 5})
    rows, _ = intents(WF, None, state, [], "coord")
    assert [(r["step"], r["state"]) for r in rows] == [("charge", "failed")]
    assert "no" in rows[0]["history"][-1]["why"]
