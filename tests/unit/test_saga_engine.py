"""The pure saga engine: DAG order, retries, timeouts, approvals, compensation (no I/O)."""

from __future__ import annotations

from relay.examples import incident_triage
from relay.saga import RunStatus, StepStatus, build_workflow, load_workflow
from relay.saga.state import Approval, Cancel, Reply, RetryRun
from tests.unit.saga_sim import Sim

INCIDENT = incident_triage.YAML  # as the orchestration article writes it


def order_saga(**ship):
    return build_workflow({"id": "order", "steps": {
        "charge": {"type": "worker", "topic": "payment.charge", "input": {"amount": "${input.amount}"},
                   "side_effect": True, "compensation": {"topic": "payment.refund",
                                                         "input": {"charge": "${steps.charge.output.id}"}}},
        "reserve": {"type": "worker", "topic": "inventory.reserve", "depends_on": ["charge"], "side_effect": True,
                    "compensation": {"topic": "inventory.release"}},
        "ship": {"type": "worker", "topic": "shipping.ship", "depends_on": ["reserve"], **ship},
    }})


def test_the_incident_workflow_loads_as_written_and_runs_to_completion():
    wf = load_workflow(INCIDENT)
    sim = Sim(wf, approvals={"approval_gate": True})
    state = sim.run({"incident_id": "INC-4821", "summary": "p95 latency up 4x"})
    assert state.status is RunStatus.COMPLETED
    order = [d.step for d in sim.dispatches]
    assert order[0] == "classify" and set(order[1:3]) == {"logs_scan", "metric_scan"} and order[3] == "rollback"
    assert sim.dispatches[0].input == {"incident_id": "INC-4821", "summary": "p95 latency up 4x"}
    assert sim.approval_requests == ["approval_gate"]


def test_a_denied_approval_stops_the_downstream_step():
    sim = Sim(load_workflow(INCIDENT), approvals={"approval_gate": False})
    state = sim.run({"incident_id": "I", "summary": "s"})
    assert state.steps["approval_gate"].status is StepStatus.DENIED
    assert "rollback" not in [d.step for d in sim.dispatches]
    assert state.status is RunStatus.FAILED, "nothing declared a compensation: failed, not compensated"


def test_an_early_approval_is_not_lost():
    sim = Sim(load_workflow(INCIDENT), behaviour=lambda c: ("silent",) if c.step == "classify" else ("ok", {}))
    sim.run({"incident_id": "I", "summary": "s"})
    sim.feed(Approval("approval_gate", True, 0.0, by="oncall"))  # before the gate is reached
    classify = next(d for d in sim.dispatches if d.step == "classify")
    sim.behaviour = lambda c: ("ok", {})
    sim.feed(Reply(classify.command_id, True, 1.0, output={}))
    state = _drain(sim)
    assert state.status is RunStatus.COMPLETED
    assert sim.approval_requests == [], "approved before it waited: no request needed"


def _drain(sim):
    return sim.drain()


def test_failure_compensates_completed_steps_in_reverse_order():
    sim = Sim(order_saga(), behaviour=lambda c: ("fail", "no courier", False) if c.step == "ship"
              else ("ok", {"id": f"{c.step}-1"}))
    state = sim.run({"amount": 10})
    assert state.status is RunStatus.COMPENSATED
    undo = [(d.step, d.topic, d.input) for d in sim.dispatches if d.compensation]
    assert undo == [("reserve", "inventory.release", {}), ("charge", "payment.refund", {"charge": "charge-1"})]
    assert state.steps["ship"].status is StepStatus.FAILED


def test_retriable_failures_back_off_then_succeed():
    calls = {"n": 0}

    def flaky(c):
        if c.step == "ship":
            calls["n"] += 1
            return ("fail", "busy", True) if calls["n"] < 3 else ("ok", {})
        return ("ok", {"id": "x"})

    sim = Sim(order_saga(retry={"max_retries": 5, "initial_backoff_sec": 1, "max_backoff_sec": 8}), behaviour=flaky)
    state = sim.run({"amount": 1})
    assert state.status is RunStatus.COMPLETED and state.steps["ship"].attempt == 3
    assert sim.now == 1 + 2, "backoff 1 s then 2 s"
    assert [d.command_id for d in sim.dispatches if d.step == "ship"] == ["r1/ship/1", "r1/ship/2", "r1/ship/3"]


def test_timeouts_retry_and_a_step_that_never_answers_is_compensated():
    sim = Sim(order_saga(), behaviour=lambda c: ("silent",) if c.step == "reserve" and not c.compensation
              else ("ok", {"id": "c"}))
    wf = build_workflow({"id": "t", "steps": {
        "charge": {"type": "worker", "topic": "p", "side_effect": True, "compensation": {"topic": "refund"}},
        "reserve": {"type": "worker", "topic": "i", "depends_on": ["charge"], "timeout_sec": 5, "side_effect": True,
                    "retry": {"max_retries": 1}, "compensation": {"topic": "release"}}}})
    sim.wf = wf
    state = sim.run({})
    assert state.steps["reserve"].status is StepStatus.COMPENSATED, "timed out: it may have acted, so undo it"
    assert [d.topic for d in sim.dispatches if d.compensation] == ["release", "refund"]
    assert state.status is RunStatus.COMPENSATED


def test_a_failing_compensation_ends_in_the_manual_queue_and_resumes_on_retry():
    broken = {"on": True}

    def behaviour(c):
        if c.step == "ship":
            return ("fail", "no", False)
        if c.compensation and c.step == "reserve" and broken["on"]:
            return ("fail", "inventory down", False)
        return ("ok", {"id": "c1"})

    sim = Sim(order_saga(), behaviour=behaviour)
    state = sim.run({"amount": 3})
    assert state.status is RunStatus.COMPENSATION_FAILED and "inventory down" in (state.reason or "")
    assert state.steps["charge"].status is StepStatus.SUCCEEDED, "nothing after the failed compensation ran"
    broken["on"] = False
    sim.finished = None
    sim.feed(RetryRun(sim.now))
    state = _drain(sim)
    assert state.status is RunStatus.COMPENSATED
    assert [d.command_id for d in sim.dispatches if d.compensation] == [
        "r1/reserve/undo/1", "r1/reserve/undo/2", "r1/charge/undo/1"]


def test_cancel_waits_for_commands_out_then_compensates_what_completed():
    sim = Sim(order_saga(), behaviour=lambda c: ("silent",) if c.step == "ship" else ("ok", {"id": "c"}))
    sim.run({"amount": 1})
    sim.feed(Cancel(sim.now))
    assert sim.state.status is RunStatus.COMPENSATING and not [d for d in sim.dispatches if d.compensation], \
        "ship's command is still out: its outcome decides what to undo"
    sim.feed(Reply("r1/ship/1", True, sim.now, output={}))
    state = _drain(sim)
    assert state.status is RunStatus.CANCELLED
    assert [d.step for d in sim.dispatches if d.compensation] == ["reserve", "charge"], "ship declares none"


def test_duplicate_and_stale_replies_change_nothing():
    sim = Sim(order_saga())
    sim.run({"amount": 1})
    before = sim.state
    sim.feed(Reply("r1/charge/1", True, 99.0, output={"id": "other"}))
    assert sim.state.steps == before.steps and sim.state.status is RunStatus.COMPLETED


def test_on_failure_retry_never_compensates():
    sim = Sim(order_saga(on_failure="retry"), behaviour=lambda c: ("fail", "address invalid", False)
              if c.step == "ship" else ("ok", {"id": "c"}))
    state = sim.run({"amount": 1})
    assert state.status is RunStatus.FAILED and not [d for d in sim.dispatches if d.compensation]


def test_condition_false_skips_its_branch():
    wf = build_workflow({"id": "c", "steps": {
        "check": {"type": "condition", "expression": "${input.amount} > 100"},
        "review": {"type": "worker", "topic": "r", "depends_on": ["check"]},
        "always": {"type": "worker", "topic": "a"}}})
    sim = Sim(wf)
    state = sim.run({"amount": 5})
    assert state.status is RunStatus.COMPLETED
    assert state.steps["review"].status is StepStatus.SKIPPED and [d.step for d in sim.dispatches] == ["always"]


def test_for_each_over_its_cap_fails_before_anything_is_sent():
    wf = build_workflow({"id": "f", "steps": {
        "first": {"type": "worker", "topic": "x"},
        "each": {"type": "for_each", "topic": "host.patch", "items": "${input.hosts}", "max_items": 3,
                 "input": {"host": "${item}"}}}})
    sim = Sim(wf)
    state = sim.run({"hosts": ["a", "b", "c", "d"]})
    assert state.status is RunStatus.FAILED and sim.dispatches == []
    assert "4 items, over the cap of 3" in (state.reason or "")
    ok = Sim(wf).run({"hosts": ["a", "b"]})
    assert ok.status is RunStatus.COMPLETED and ok.steps["each"].output == [
        {"done": "each[0]", "input": {"host": "a"}}, {"done": "each[1]", "input": {"host": "b"}}]


def test_max_parallel_bounds_commands_in_flight():
    wf = build_workflow({"id": "p", "steps": {
        "each": {"type": "for_each", "topic": "t", "items": "${input.xs}", "max_parallel": 2,
                 "input": {"x": "${item}"}}}})
    out: list[str] = []
    sim = Sim(wf, behaviour=lambda c: (out.append(c.command_id), ("silent",))[1])
    sim.run({"xs": list(range(5))})
    assert len(out) == 2, "two out, three waiting"


def test_state_survives_a_json_round_trip_mid_run():
    import json

    from relay.saga.state import from_json, to_json, to_stored
    sim = Sim(load_workflow(INCIDENT))  # stops at the approval gate
    state = sim.run({"incident_id": "I", "summary": "s"})
    assert state.status is RunStatus.AWAITING_APPROVAL
    again = from_json(json.loads(json.dumps(to_json(state))))
    assert again == state
    assert from_json(json.loads(json.dumps(to_stored(state)))) == state, "the stored form, defaults left out"
    sim.state = again
    sim.feed(Approval("approval_gate", True, sim.now, by="lead"))
    assert _drain(sim).status is RunStatus.COMPLETED


def test_the_stored_form_of_a_run_is_its_dataclass_form():
    import dataclasses
    import json

    from relay.saga.state import from_json, to_json, to_stored

    wf = load_workflow(INCIDENT)
    sim = Sim(wf, approvals={"approval_gate": True})
    state = sim.run({"incident_id": "INC-1", "summary": "s"})
    assert json.loads(json.dumps(to_json(state))) == json.loads(json.dumps(dataclasses.asdict(state)))
    assert from_json(json.loads(json.dumps(to_json(state)))) == state
    stored = json.loads(json.dumps(to_stored(state)))
    assert from_json(stored) == state and len(json.dumps(stored)) < len(json.dumps(to_json(state)))
    assert all(None not in e.values() for e in stored["timeline"]), "timeline keys that are None are left out"


def test_a_cancel_while_compensating_leaves_the_run_to_end_compensated():
    from relay.saga import decide
    from relay.saga.state import Start

    wf = order_saga()
    state, _ = decide(wf, None, Start("r1", {"amount": 1}, 0.0))
    for n, (cid, ok) in enumerate([("r1/charge/1", True), ("r1/reserve/1", True), ("r1/ship/1", False)], 1):
        state, _ = decide(wf, state, Reply(cid, ok, float(n), output={"id": "c"}, error="no courier", retriable=False))
    assert state.status is RunStatus.COMPENSATING  # the release is out
    state, sent = decide(wf, state, Cancel(4.0))
    assert state.status is RunStatus.COMPENSATING and not sent
    state, _ = decide(wf, state, Reply("r1/reserve/undo/1", True, 5.0))
    state, _ = decide(wf, state, Reply("r1/charge/undo/1", True, 6.0))
    assert state.status is RunStatus.COMPENSATED, "the run failed; a late cancel does not rename its end"
    assert any(e["outcome"].startswith("cancel ignored") for e in state.timeline)


def test_decide_leaves_the_state_it_was_given_as_it_was():
    """The coordinator reads the old state after deciding (metrics count what the timeline gained)."""
    import copy
    import json

    from relay.saga import decide
    from relay.saga.state import Start, to_json

    wf = load_workflow(INCIDENT)
    state, _ = decide(wf, None, Start("r1", {"incident_id": "I", "summary": "s"}, 0.0))
    events = [Reply("r1/classify/1", True, 1.0, output={"x": 1}), Approval("approval_gate", True, 1.5, by="ann"),
              Reply("r1/logs_scan/1", True, 2.0), Reply("r1/metric_scan/1", True, 2.5), Cancel(3.0)]
    for event in events:
        before = json.dumps(to_json(state), sort_keys=True)
        kept = copy.deepcopy(state)
        state_after, _ = decide(wf, state, event)
        assert json.dumps(to_json(state), sort_keys=True) == before and state == kept
        state = state_after
