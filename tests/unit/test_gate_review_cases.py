"""Edge cases of the gate, the evidence and the side-effect records found in review (pure)."""

from __future__ import annotations

import dataclasses

from relay.governance.approvals import ApprovalRequest, Decision as Vote, decide
from relay.policy import build_policy
from relay.saga import RunStatus, StepStatus, build_workflow
from relay.saga.evidence import extend
from relay.saga.gate import Gate, payload_hash
from relay.saga.intents import intents
from relay.saga.state import Approval, Reply, RetryRun, Start
from tests.unit.saga_sim import Sim


def gate(*rules):
    return Gate(build_policy({"version": "v1", "default": "allow", "rules": list(rules)}))


def test_a_retried_run_asks_again_instead_of_waiting_on_its_withdrawn_request():
    wf = build_workflow({"id": "p", "steps": {
        "fan": {"type": "parallel", "steps": ["a", "b"]},
        "a": {"type": "worker", "topic": "t.a"},
        "b": {"type": "worker", "topic": "t.b"}}})
    sim = Sim(wf, gate=gate({"id": "ok", "when": {"topic": "t.a"}, "decision": "require_approval"}),
              behaviour=lambda c: ("fail", "down", False))
    sim.feed(Start("r1", {}, 0.0))
    state = sim.drain()
    assert state.status is RunStatus.FAILED and state.gates["a"]["state"] == "withdrawn"
    sim.behaviour = lambda c: ("ok", {})
    sim.feed(RetryRun(100_000.0))  # long after the first request's expiry
    sim.drain()
    assert [r.gate["request_id"].rsplit("/", 1)[-1] for r in sim.requests] == ["1", "2"]
    sim.feed(Approval("a", True, 100_001.0, by="ann", payload_hash=sim.requests[-1].gate["hash"]))
    assert sim.drain().status is RunStatus.COMPLETED


def test_four_eyes_need_a_known_initiator_and_a_child_run_inherits_it():
    request = ApprovalRequest("r", "s", "h", "", None, four_eyes=True, initiator=None)
    refused = decide(request, [], Vote("ann", True, "h", 0.0))
    assert not refused.counted and "initiator is unknown" in (refused.refusal or "")
    child = build_workflow({"id": "child", "steps": {"x": {"type": "worker", "topic": "t.x"}}})
    parent = build_workflow({"id": "parent", "steps": {"sub": {"type": "subworkflow", "workflow": "child"}}})
    sim = Sim(parent, workflows={"child": child})
    sim.feed(Start("r1", {}, 0.0, initiator="ann"))
    sim.drain()
    assert sim.runs["r1/sub/1"].initiator == "ann"


def test_an_ended_run_with_new_entries_publishes_its_head_again():
    state = Sim(build_workflow({"id": "o", "steps": {"a": {"type": "worker", "topic": "t"}}})).run({})
    extend(state, None)
    later = dataclasses.replace(state, timeline=[*state.timeline, {"at": 9.0, "outcome": "answered the parent again"}])
    links, publish = extend(later, RunStatus.COMPLETED)
    assert len(links) == 1 and publish


def test_a_throttled_compensation_keeps_the_rollback_window_open():
    wf = build_workflow({"id": "o", "rollback_window_sec": 30, "steps": {
        "charge": {"type": "worker", "topic": "pay", "side_effect": True, "compensation": {"topic": "refund"}},
        "ship": {"type": "worker", "topic": "ship", "depends_on": ["charge"]}}})
    g = gate({"id": "slow", "when": {"topic": "refund"}, "decision": "throttle",
              "throttle": {"rate_per_sec": 0.01, "burst": 1, "key": "topic"}})
    sim = Sim(wf, gate=g, buckets={"slow:refund": 45.0 + 100.0},  # the next slot 45 s after the window opens
              behaviour=lambda c: ("fail", "no", False) if c.step == "ship" else ("ok", {}))
    state = sim.run({})
    assert state.status is RunStatus.COMPENSATED, state.reason
    assert any(e["outcome"].startswith("rollback window extended") for e in state.timeline)


def test_a_denial_by_a_person_fails_the_intent_under_the_requests_hash():
    wf = build_workflow({"id": "o", "steps": {"pay": {"type": "worker", "topic": "pay", "input": {"n": 1},
                                                      "effect": "external_transaction"}}})
    sim = Sim(wf, gate=gate({"id": "ok", "when": {"topic": "pay"}, "decision": "require_approval"}))
    sim.feed(Start("r1", {}, 0.0))
    sim.drain()
    before = sim.state
    sim.feed(Approval("pay", False, 1.0, by="cfo", reason="no", payload_hash=sim.requests[0].gate["hash"]))
    rows, _ = intents(wf, before, sim.state, [], "coord")
    assert [(r["state"], r["hash"]) for r in rows] == [("failed", payload_hash("pay", {"n": 1}))]


def test_payload_hashes_take_numbers_as_jsonb_gives_them_back():
    assert payload_hash("t", {"a": 1.0, "b": [1e16, -0.0]}) == payload_hash("t", {"a": 1, "b": [10**16, 0]})
    assert payload_hash("t", {"a": 1.5}) != payload_hash("t", {"a": 1})


def test_an_outcome_the_participant_cannot_tell_ends_the_step_timed_out_and_compensated():
    wf = build_workflow({"id": "o", "steps": {
        "pay": {"type": "worker", "topic": "pay", "side_effect": True, "compensation": {"topic": "refund"},
                "retry": {"max_retries": 0}}}})
    sim = Sim(wf, behaviour=lambda c: ("silent",))
    sim.feed(Start("r1", {}, 0.0))
    sim.drain()
    sim.behaviour = lambda c: ("ok", {})
    sim.feed(Reply("r1/pay/1", False, 1.0, error="ambiguous", retriable=False, uncertain=True))
    state = sim.drain()
    assert state.steps["pay"].status is StepStatus.COMPENSATED and sim.undo_log == [("r1", "pay")]
