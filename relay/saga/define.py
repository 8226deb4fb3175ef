"""Saga definitions in Python, next to the participant code; the same validated model as YAML.

    order = SagaDefinition("order", deadline_sec=600)
    payments = Consumer("payments")

    @order.worker("charge", consumer=payments, side_effect=True, input={"amount": "${input.amount}"})
    async def charge(command: Command, tx: Tx) -> dict: ...

    @order.compensation("charge", consumer=payments)
    async def refund(command: Command, tx: Tx) -> None: ...

    order.step("ship", type="worker", topic="shipping.ship", depends_on=["charge"])
    workflow = order.build()            # validated: every problem at once (SagaDefinitionError)

A decorated worker step's topic defaults to ``<workflow>.<step>`` and its compensation's to
``<workflow>.<step>.undo``; the handler is registered as the consumer's participant of that topic.
Fields take the YAML names (``timeout_sec``, ``retry``, ``no_rollback_reason``, ...): the mapping
built here goes through :func:`relay.saga.load.build_workflow`, like a YAML document.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from relay.consume.consumer import Consumer
from relay.saga.load import build_workflow
from relay.saga.model import Workflow

F = TypeVar("F", bound=Callable[..., Any])


class SagaDefinition:
    def __init__(self, workflow_id: str, **fields: Any) -> None:
        """``fields``: the workflow's own YAML fields (``deadline_sec``, ``rollback_window_sec``, ``name``)."""
        self.id = workflow_id
        self.doc: dict[str, Any] = {"id": workflow_id, **fields, "steps": {}}

    def step(self, step_id: str, **fields: Any) -> SagaDefinition:
        """Declare (or extend) a step with YAML fields; returns self for chaining."""
        self.doc["steps"].setdefault(step_id, {}).update(fields)
        return self

    def worker(self, step_id: str, *, consumer: Consumer, topic: str | None = None, **fields: Any,
               ) -> Callable[[F], F]:
        """Declare a worker step served by the decorated participant handler."""
        topic = topic or f"{self.id}.{step_id}"

        def register(handler: F) -> F:
            self.step(step_id, type="worker", topic=topic, **fields)
            consumer.participant(topic)(handler)
            return handler
        return register

    def compensation(self, step_id: str, *, consumer: Consumer, topic: str | None = None,
                     input: dict[str, Any] | None = None, retry: dict[str, Any] | None = None,
                     ) -> Callable[[F], F]:
        """Declare the decorated participant handler as the compensation of ``step_id``."""
        topic = topic or f"{self.id}.{step_id}.undo"

        def register(handler: F) -> F:
            comp: dict[str, Any] = {"topic": topic}
            if input is not None:
                comp["input"] = input
            if retry is not None:
                comp["retry"] = retry
            self.step(step_id, compensation=comp)
            consumer.participant(topic)(handler)
            return handler
        return register

    def build(self) -> Workflow:
        return build_workflow(self.doc)
