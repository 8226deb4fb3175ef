"""Saga events and commands on the wire: strict decoding, deterministic ids, child runs."""

from __future__ import annotations

import pytest

from relay.errors import DecodeError
from relay.saga import wire
from relay.saga.state import Dispatch, Finished, Reply, RunStatus, Start, StartChild


def test_the_same_idempotency_key_gives_the_same_run():
    assert wire.run_id_for("order", "k1") == wire.run_id_for("order", "k1")
    assert wire.run_id_for("order", "k1") != wire.run_id_for("order", "k2") != wire.run_id_for("refund", "k1")


def test_decoding_names_field_value_and_expectation():
    assert wire.decode("SagaStart", {"workflow": "order", "input": {"a": 1}, "business_key": "o-1"}, 5.0, "r") == \
        Start("r", {"a": 1}, 5.0, business_key="o-1")
    assert wire.decode("SagaReply", {"command_id": "r/x/1", "ok": False, "error": "no", "retriable": False}, 1, "r") \
        == Reply("r/x/1", False, 1, error="no", retriable=False)
    with pytest.raises(DecodeError, match=r"field 'payload.ok' = 'yes'; expected true or false in SagaReply"):
        wire.decode("SagaReply", {"command_id": "c", "ok": "yes"}, 0, "r")
    with pytest.raises(DecodeError, match=r"field 'type' = 'SagaExplode'; expected one of \['SagaStart'"):
        wire.decode("SagaExplode", {}, 0, "r")
    with pytest.raises(DecodeError, match=r"field 'payload.status' = 'done'; expected one of"):
        wire.decode("SagaChildDone", {"child_run_id": "p/s/1", "status": "done"}, 0, "p")
    with pytest.raises(DecodeError, match=r"'payload.attempt' = True; expected an integer >= 1 in SagaCompensate"):
        wire.decode("SagaCompensate", {"request_id": "p/s/undo/1", "attempt": True, "parent_run_id": "p",
                                       "parent_step": "s"}, 0, "p/s/1")
    with pytest.raises(DecodeError, match=r"field 'payload.workflow' = None"):
        wire.workflow_of({"input": {}})


def test_a_command_keeps_its_event_id_when_sent_again():
    cmd = Dispatch("r/charge/1", "r", "charge", 1, "payment.charge", {"amount": 3}, "r/charge")
    (first,) = wire.encode(cmd, wire.Envelope("order", correlation_id="order-7", causation_id="e1"))
    (again,) = wire.encode(cmd, wire.Envelope("order", correlation_id="order-7", causation_id="e2"))
    assert first.event_id == again.event_id == wire.command_event_id("r/charge/1")
    assert (first.aggregatetype, first.aggregateid, first.type) == ("payment.charge", "r", "SagaCommand")
    assert first.headers == {"saga-id": "r", "correlation-id": "order-7", "causation-id": "e1"}
    reply = wire.reply(first.payload, ok=True, output={"charge_id": "ch_1"})
    assert first.payload["reply_to"] == "saga.order"
    assert (reply.aggregatetype, reply.aggregateid, reply.type) == ("saga.order", "r", "SagaReply")
    assert wire.decode(reply.type, reply.payload, 0, "r") == Reply("r/charge/1", True, 0, output={"charge_id": "ch_1"})


def test_a_child_run_reports_to_its_parent():
    (start,) = wire.encode(StartChild("p/sub/1", "child_wf", {"x": 1}, "p", "sub"),
                           wire.Envelope("parent_wf", correlation_id="p", causation_id="e"))
    assert (start.aggregatetype, start.aggregateid, start.type) == ("saga.child_wf", "p/sub/1", "SagaStart")
    assert wire.workflow_of(start.payload) == "child_wf"
    assert wire.decode(start.type, start.payload, 0, "p/sub/1").parent_workflow == "parent_wf"
    child = wire.Envelope("child_wf", correlation_id="p", causation_id="e", parent_workflow="parent_wf")
    finished, done = wire.encode(Finished("p/sub/1", RunStatus.COMPLETED, {"a": 1}), child)
    assert finished.aggregatetype == "saga-finished"
    assert (done.aggregatetype, done.aggregateid, done.type) == ("saga.parent_wf", "p", "SagaChildDone")
    assert wire.parent_of("p/sub/1") == ("p", "sub") and wire.parent_of("p") is None
