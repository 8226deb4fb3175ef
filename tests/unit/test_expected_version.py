"""Optimistic concurrency (pure): a step's expected_version is rendered into its command and
carried on the wire; Command.expect refuses a stale aggregate, retriably only with on_stale: retry;
definitions without it keep their hashes."""

import pytest

from relay.errors import SagaDefinitionError, StaleVersion
from relay.handling.event import Event
from relay.saga import build_workflow, wire
from relay.saga.participant import parse
from relay.saga.state import Dispatch
from tests.unit.saga_sim import Sim


def workflow(**update):
    return build_workflow({"id": "case", "steps": {
        "load": {"type": "worker", "topic": "case.load"},
        "update": {"type": "worker", "topic": "case.update", "depends_on": ["load"],
                   "input": {"risk": "high"}, "expected_version": "${steps.load.output.version}", **update},
    }})


def through_the_wire(dispatch):
    """The participant's Command of ``dispatch``, encoded and decoded as on the topics."""
    [event] = wire.encode(dispatch, wire.Envelope("case", correlation_id="r1", causation_id="x"))
    return parse(Event(id="e", topic="t", key="r1", type=event.type, payload=event.payload, headers={},
                       partition=0, offset=0))


def test_the_expected_version_is_rendered_into_the_command_and_survives_the_wire():
    sim = Sim(workflow(), behaviour=lambda c: ("ok", {"version": 7}))
    sim.run({})
    update = next(d for d in sim.dispatches if d.step == "update")
    assert (update.expected_version, update.on_stale) == (7, "fail")
    command = through_the_wire(update)
    assert (command.expected_version, command.on_stale) == (7, "fail")
    command.expect(7)
    with pytest.raises(StaleVersion, match="expects version 7, the aggregate is at 8") as stale:
        command.expect(8)
    assert not stale.value.retriable, "on_stale: fail surfaces it"


def test_on_stale_retry_makes_the_refusal_retriable_and_no_expectation_accepts_any_version():
    sim = Sim(workflow(on_stale="retry"), behaviour=lambda c: ("ok", {"version": 1}))
    sim.run({})
    update = next(d for d in sim.dispatches if d.step == "update")
    command = through_the_wire(update)
    with pytest.raises(StaleVersion) as stale:
        command.expect(2)
    assert stale.value.retriable
    plain = Dispatch("c", "r1", "load", 1, "case.load", {}, "r1/load")
    [event] = wire.encode(plain, wire.Envelope("case", correlation_id="r1", causation_id="x"))
    assert "expected_version" not in event.payload
    through_the_wire(plain).expect(99)


def test_the_template_is_checked_and_an_undeclared_expectation_keeps_the_hash():
    with pytest.raises(SagaDefinitionError, match="expected_version"):
        workflow(expected_version="${steps.nowhere.output.version}")
    with pytest.raises(SagaDefinitionError, match="on_stale"):
        workflow(on_stale="sometimes")
    plain = {"id": "case", "steps": {"load": {"type": "worker", "topic": "case.load"}}}
    assert build_workflow(plain).hash == build_workflow(
        {"id": "case", "steps": {"load": {"type": "worker", "topic": "case.load", "on_stale": "fail"}}}).hash
