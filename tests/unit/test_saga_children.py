"""Undoing a subworkflow step: its completed child run compensates itself and answers its parent."""

from __future__ import annotations

from dataclasses import replace

from relay.saga import RunStatus, StepStatus, build_workflow, decide, wire
from relay.saga.state import CompensateRequest, Finished, Reply, RetryRun, Start
from tests.unit.saga_sim import Sim

CHILD = "r1/trip/1"


def trip(**extra_steps):
    return build_workflow({"id": "trip", "steps": {
        "hold": {"type": "worker", "topic": "seat.hold", "side_effect": True,
                 "compensation": {"topic": "seat.release", "input": {"hold": "${steps.hold.output.id}"}}},
        "lookup": {"type": "worker", "topic": "fare.lookup", "depends_on": ["hold"]},  # read-only: nothing to undo
        "book": {"type": "worker", "topic": "fare.book", "depends_on": ["lookup"], "side_effect": True,
                 "compensation": {"topic": "fare.cancel"}},
        **extra_steps,
    }})


def order(child="trip", **settings):
    return build_workflow({"id": "order", **settings, "steps": {
        "charge": {"type": "worker", "topic": "payment.charge", "side_effect": True,
                   "compensation": {"topic": "payment.refund"}},
        "trip": {"type": "subworkflow", "workflow": child, "depends_on": ["charge"], "input": {"to": "${input.to}"}},
        "ship": {"type": "worker", "topic": "shipping.ship", "depends_on": ["trip"]},
    }})


def participants(broken: set[str] | None = None, silent: set[str] = frozenset()):
    """shipping.ship refuses for good; topics in ``broken`` fail for good; ``silent`` never answer."""
    def answer(c):
        if c.topic in silent:
            return ("silent",)
        if c.topic == "shipping.ship" or c.topic in (broken or set()):
            return ("fail", f"{c.topic} refused", False)
        return ("ok", {"id": f"{c.topic}-1"})
    return answer


def sim(behaviour, **workflows):
    return Sim(order(), behaviour=behaviour, workflows={"trip": trip(), **workflows})


def test_a_failing_parent_undoes_its_completed_child_last_completed_first():
    s = sim(participants())
    state = s.run({"to": "Lisbon"})
    child = s.runs[CHILD]
    assert [e.status for e in s.ends[CHILD]] == [RunStatus.COMPLETED, RunStatus.COMPENSATED]
    assert child.steps["book"].status is StepStatus.COMPENSATED and child.steps["hold"].status is StepStatus.COMPENSATED
    assert child.steps["lookup"].status is StepStatus.SUCCEEDED, "read-only: nothing to undo"
    assert s.undo_log == [("r1", "trip"), (CHILD, "book"), (CHILD, "hold"), ("r1", "charge")]
    release = next(d for d in s.dispatches if d.topic == "seat.release")
    assert release.input == {"hold": "seat.hold-1"} and release.idempotency_key == f"{CHILD}/hold/undo"
    assert state.steps["trip"].status is StepStatus.COMPENSATED
    assert state.status is RunStatus.COMPENSATED and "'ship'" in (state.reason or "")
    (request,) = s.undo_requests
    assert (request.command_id, request.child_run_id, request.workflow) == ("r1/trip/undo/1", CHILD, "trip")


def test_a_child_with_nothing_to_undo_answers_compensated():
    readonly = build_workflow({"id": "quote", "steps": {"price": {"type": "worker", "topic": "fare.lookup"}}})
    s = Sim(order(child="quote"), behaviour=participants(), workflows={"quote": readonly})
    state = s.run({"to": "Porto"})
    assert s.runs[CHILD].status is RunStatus.COMPENSATED, "nothing it did remains: compensated, not failed"
    assert state.steps["trip"].status is StepStatus.COMPENSATED and state.status is RunStatus.COMPENSATED
    assert [d.topic for d in s.dispatches if d.compensation] == ["payment.refund"]


def test_a_child_whose_compensation_fails_ends_its_parent_in_the_manual_queue_until_retried():
    broken = {"fare.cancel"}
    s = sim(participants(broken))
    state = s.run({"to": "Faro"})
    assert s.runs[CHILD].status is RunStatus.COMPENSATION_FAILED
    assert state.status is RunStatus.COMPENSATION_FAILED
    assert state.steps["trip"].status is StepStatus.COMPENSATION_FAILED
    assert "'trip'" in (state.reason or "") and CHILD in (state.reason or "") and "fare.cancel refused" in state.reason
    assert state.steps["charge"].status is StepStatus.SUCCEEDED, "nothing under the failed undo ran"
    broken.clear()
    s.finished = None
    s.feed(RetryRun(s.now))  # the operator retries the parent: it asks the child again, which resumes
    state = s.drain()
    assert s.runs[CHILD].status is RunStatus.COMPENSATED and state.status is RunStatus.COMPENSATED
    assert [r.attempt for r in s.undo_requests] == [1, 2]
    assert [d.command_id for d in s.dispatches if d.compensation] == [
        f"{CHILD}/book/undo/1", f"{CHILD}/book/undo/2", f"{CHILD}/hold/undo/1", "r1/charge/undo/1"]


def test_a_duplicate_undo_request_sends_one_set_of_undo_commands():
    s = sim(participants(silent={"fare.cancel"}))
    s.feed(Start("r1", {"to": "Braga"}, 0.0))
    s.drain()  # no timer fires
    assert s.runs[CHILD].status is RunStatus.COMPENSATING, "the child's first undo is out"
    request = CompensateRequest("r1/trip/undo/1", 1, s.now, "r1", "trip")
    for _ in range(2):  # again while it compensates: nothing new
        s.runs[CHILD], commands = decide(s.workflows["trip"], s.runs[CHILD], request)
        assert commands == []
    s.feed(_ok(f"{CHILD}/book/undo/1", s.now), CHILD)
    state = s.drain()
    assert state.status is RunStatus.COMPENSATED
    after, commands = decide(s.workflows["trip"], s.runs[CHILD], request)  # and once it ended: nothing either
    assert commands == [] and after == s.runs[CHILD]
    undo = [d.command_id for d in s.dispatches if d.compensation]
    assert undo == [f"{CHILD}/book/undo/1", f"{CHILD}/hold/undo/1", "r1/charge/undo/1"]


def test_a_newer_request_to_an_ended_child_is_answered_again():
    s = sim(participants())
    s.run({"to": "Evora"})
    retried = CompensateRequest("r1/trip/undo/2", 2, 9.0, "r1", "trip")  # after an operator's retry of the parent
    child, commands = decide(s.workflows["trip"], s.runs[CHILD], retried)
    assert commands == [Finished(CHILD, RunStatus.COMPENSATED, None, child.reason, answers="r1/trip/undo/2",
                                 again=True)], "its end, told again: no undo is sent twice"
    assert child.status is RunStatus.COMPENSATED and child.undo_request_attempt == 2


def test_a_child_still_running_stops_and_undoes_what_completed():
    wf = trip()
    state, _ = decide(wf, None, Start(CHILD, {}, 0.0, parent_workflow="order"))
    state, _ = decide(wf, state, _ok(f"{CHILD}/hold/1", 1.0, {"id": "h1"}))  # lookup is out now
    state, commands = decide(wf, state, CompensateRequest("r1/trip/undo/1", 1, 3.0, "r1", "trip"))
    assert state.status is RunStatus.COMPENSATING and commands == [], "lookup is out: its outcome comes first"
    state, commands = decide(wf, state, _ok(f"{CHILD}/lookup/1", 4.0))
    assert [(c.topic, c.input) for c in commands if hasattr(c, "topic")] == [("seat.release", {"hold": "h1"})]
    state, commands = decide(wf, state, _ok(f"{CHILD}/hold/undo/1", 5.0))
    assert state.status is RunStatus.COMPENSATED and state.steps["book"].status is StepStatus.NOT_RUN
    (end,) = [c for c in commands if isinstance(c, Finished)]
    assert end.answers == "r1/trip/undo/1"


def _ok(command_id, at, output=None):
    return Reply(command_id, True, at, output=output or {})


def test_a_run_that_is_not_a_child_ignores_undo_requests():
    s = Sim(trip())
    state = s.run({})
    assert state.status is RunStatus.COMPLETED
    after, commands = decide(s.wf, state, CompensateRequest("x/trip/undo/1", 1, 1.0, "x", "trip"))
    assert replace(after, updated_at=state.updated_at) == state and commands == []


def test_the_parents_rollback_window_bounds_the_childs_undo():
    s = sim(participants(silent={"fare.cancel"}))
    s.wf = order(rollback_window_sec=20)
    state = s.run({"to": "Tomar"})
    assert state.status is RunStatus.COMPENSATION_FAILED and "rollback window (20 s)" in (state.reason or "")
    assert s.runs[CHILD].status is RunStatus.COMPENSATING, "the child keeps going; a late answer changes nothing"


def test_a_grandchild_is_undone_through_its_parent():
    inner = build_workflow({"id": "hotel", "steps": {
        "room": {"type": "worker", "topic": "room.book", "side_effect": True,
                 "compensation": {"topic": "room.cancel"}}}})
    middle = trip(stay={"type": "subworkflow", "workflow": "hotel", "depends_on": ["book"]})
    s = Sim(order(), behaviour=participants(), workflows={"trip": middle, "hotel": inner})
    state = s.run({"to": "Sintra"})
    grandchild = f"{CHILD}/stay/1"
    assert s.undo_log == [("r1", "trip"), (CHILD, "stay"), (grandchild, "room"), (CHILD, "book"), (CHILD, "hold"),
                          ("r1", "charge")]
    assert s.runs[grandchild].status is RunStatus.COMPENSATED and state.status is RunStatus.COMPENSATED


def test_the_undo_request_and_its_answer_on_the_wire():
    s = sim(participants())
    s.run({"to": "Aveiro"})
    (request,) = s.undo_requests
    (ev,) = wire.encode(request, wire.Envelope("order", correlation_id="r1", causation_id="e"))
    assert (ev.aggregatetype, ev.aggregateid, ev.type) == ("saga.trip", CHILD, "SagaCompensate")
    assert ev.event_id == wire.command_event_id("r1/trip/undo/1")
    assert wire.decode(ev.type, ev.payload, 1.0, CHILD) == CompensateRequest("r1/trip/undo/1", 1, 1.0, "r1", "trip")
    again = Finished(CHILD, RunStatus.COMPENSATED, answers="r1/trip/undo/2", again=True)
    (done,) = wire.encode(again, wire.Envelope("trip", correlation_id="r1", causation_id="e", parent_workflow="order"))
    assert (done.aggregatetype, done.aggregateid, done.type) == ("saga.order", "r1", "SagaChildDone")
    assert wire.decode(done.type, done.payload, 2.0, "r1").request == "r1/trip/undo/2"


def test_an_undo_that_times_out_asks_again_and_the_child_answers_the_latest_request():
    wf = order()  # YAML gives a subworkflow step no timeout_sec; a step built in Python may have one
    s = Sim(replace(wf, steps={**wf.steps, "trip": replace(wf.steps["trip"], timeout_s=5.0)}),
            behaviour=participants(silent={"fare.cancel"}), workflows={"trip": trip()})
    s.feed(Start("r1", {"to": "Beja"}, 0.0))
    s.drain()
    s.fire("r1/trip/undo/1/timeout")
    s.fire("r1/trip/undo/1/backoff")
    s.drain()
    assert [r.attempt for r in s.undo_requests] == [1, 2]
    undo = [d.command_id for d in s.dispatches if d.compensation]
    assert undo == [f"{CHILD}/book/undo/1"], "asked twice, undone once"
    s.feed(_ok(f"{CHILD}/book/undo/1", s.now), CHILD)
    state = s.drain()
    assert [e.answers for e in s.ends[CHILD]] == [None, "r1/trip/undo/2"]
    assert state.status is RunStatus.COMPENSATED and state.steps["trip"].undo_attempt == 2
