"""The demo's order saga: charge the payment, reserve the stock, ship; shipping refused for orders
marked ``fail``, and then the stock is released and the payment refunded (last done, first undone).

    relay worker relay.examples.order_saga:coordinator     # runs the order saga and incident triage
    relay worker relay.examples.order_saga:participants    # payment, inventory, shipping, SRE jobs

Each participant's effect is one row in ``demo_saga_effects``, written in the command's inbox
transaction together with its reply. The table deliberately has no unique constraint: an effect
that happened twice would show. A failing shipment first fails retriably ("courier API timed
out"), so its retry waits for a durable backoff timer; the second attempt fails for good.
"""

from __future__ import annotations

from typing import Any

import psycopg

from relay.config import Settings
from relay.consume.consumer import Consumer
from relay.consume.pg import Tx
from relay.errors import StepFailed
from relay.examples import incident_triage
from relay.saga.coordinator import SagaCoordinator
from relay.saga.load import build_workflow
from relay.saga.model import Workflow
from relay.saga.participant import Command

ORDER_SAGA = "order_saga"
STEPS = ("charge", "refund", "reserve", "release", "ship", "notify")  # topics <workflow>.<step>
SHIP_RETRY_BACKOFF_S = 0.2

SCHEMA = """
CREATE TABLE IF NOT EXISTS demo_saga_effects (
    n bigserial PRIMARY KEY, workflow text NOT NULL, kind text NOT NULL, run_id text NOT NULL,
    idempotency_key text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE INDEX IF NOT EXISTS demo_saga_effects_run ON demo_saga_effects (run_id);
CREATE INDEX IF NOT EXISTS demo_saga_effects_wf ON demo_saga_effects (workflow);
"""


def ensure_schema(conn: psycopg.Connection[Any]) -> None:
    """The effects table (idempotent; concurrent callers serialise on an advisory lock)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(7263)")
        conn.execute(SCHEMA)


def step_topics(wf: str = ORDER_SAGA) -> list[str]:
    """The aggregate types of the saga's step and compensation commands."""
    return [f"{wf}.{s}" for s in STEPS]


def order_workflow(wf: str = ORDER_SAGA, *, version: int = 1) -> Workflow:
    """Version 2 adds a ``notify`` step after shipping (a changed definition: a new hash)."""
    extra = {"notify": {"type": "worker", "topic": f"{wf}.notify", "depends_on": ["ship"]}} if version == 2 else {}
    return build_workflow({"id": wf, "steps": {
        **extra,
        "charge": {"type": "worker", "topic": f"{wf}.charge", "input": {"amount": "${input.amount}"},
                   "side_effect": True, "timeout_sec": 20,
                   "compensation": {"topic": f"{wf}.refund", "input": {"charge": "${steps.charge.output.charge_id}"}}},
        "reserve": {"type": "worker", "topic": f"{wf}.reserve", "depends_on": ["charge"], "side_effect": True,
                    "timeout_sec": 20, "compensation": {"topic": f"{wf}.release"}},
        "ship": {"type": "worker", "topic": f"{wf}.ship", "depends_on": ["reserve"], "timeout_sec": 20,
                 "input": {"fail": "${input.fail}"},
                 "retry": {"max_retries": 3, "initial_backoff_sec": SHIP_RETRY_BACKOFF_S}},
    }})


async def record(tx: Tx, wf: str, kind: str, cmd: Command) -> None:
    await tx.send("INSERT INTO demo_saga_effects (workflow, kind, run_id, idempotency_key) VALUES (%s, %s, %s, %s)",
                  (wf, kind, cmd.run_id, cmd.idempotency_key))  # queued: no round trip in a batch


def add_order_participants(consumer: Consumer, wf: str = ORDER_SAGA) -> Consumer:
    """Subscribe the order saga's participants (payment, inventory, shipping) to ``consumer``."""

    @consumer.participant(f"{wf}.charge")
    async def charge(cmd: Command, tx: Tx) -> dict[str, Any]:
        await record(tx, wf, "charge", cmd)
        return {"charge_id": f"ch-{cmd.run_id[:8]}"}

    def record_only(kind: str) -> Any:  # a participant whose whole effect is its row
        async def handle(cmd: Command, tx: Tx) -> None:
            await record(tx, wf, kind, cmd)
        handle.__name__ = kind
        return handle

    for kind in ("refund", "reserve", "release", "notify"):
        consumer.participant(f"{wf}.{kind}")(record_only(kind))

    @consumer.participant(f"{wf}.ship")
    async def ship(cmd: Command, tx: Tx) -> None:
        if cmd.input.get("fail"):
            await record(tx, wf, "ship-attempt", cmd)  # rolled back with the failure: must never show
            if cmd.attempt == 1:
                raise StepFailed("courier API timed out", retriable=True)
            raise StepFailed("no courier for this address")
        await record(tx, wf, "ship", cmd)

    return consumer


def coordinator(settings: Settings) -> Consumer:
    """The demo's coordinator: the order saga and the incident-triage workflow."""
    return SagaCoordinator([order_workflow(), incident_triage.workflow()], name="relay-demo-saga").consumer


def participants(settings: Settings) -> Consumer:
    """Every participant of the demo's two workflows, in one worker."""
    consumer = Consumer("relay-demo-saga-participants")
    add_order_participants(consumer)
    incident_triage.add_participants(consumer)
    return consumer
