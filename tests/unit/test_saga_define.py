"""Saga definitions in Python: decorators next to the participants build the YAML model."""

from __future__ import annotations

import pytest

from relay import Consumer
from relay.errors import SagaDefinitionError
from relay.saga import load_workflow
from relay.saga.define import SagaDefinition

YAML = """
id: order
deadline_sec: 600
steps:
  charge:
    type: worker
    topic: order.charge
    input: {amount: "${input.amount}"}
    side_effect: true
    compensation: {topic: order.charge.undo}
  ship: {type: worker, topic: shipping.ship, depends_on: [charge]}
"""


def test_decorators_build_the_same_workflow_as_yaml_and_register_participants():
    order = SagaDefinition("order", deadline_sec=600)
    payments = Consumer("payments")

    @order.worker("charge", consumer=payments, side_effect=True, input={"amount": "${input.amount}"})
    async def charge(command, tx):
        return {"charge_id": "c"}

    @order.compensation("charge", consumer=payments)
    async def refund(command, tx):
        return None

    order.step("ship", type="worker", topic="shipping.ship", depends_on=["charge"])
    assert order.build().hash == load_workflow(YAML).hash
    assert sorted(s.topic for s in payments.subscriptions) == ["outbox.event.order.charge",
                                                              "outbox.event.order.charge.undo"]


def test_problems_are_reported_like_yaml():
    broken = SagaDefinition("broken").step("a", type="worker", side_effect=True, depends_on=["nope"])
    with pytest.raises(SagaDefinitionError) as info:
        broken.build()
    assert len(info.value.problems) == 3  # no topic, unknown dependency, neither compensation nor reason
