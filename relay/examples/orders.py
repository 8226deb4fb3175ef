"""The demo "orders" service: its own tables, the order events it publishes, and the consumer.

Publishing side: ``place_order`` (and ``confirm_order``, for callers that confirm themselves)
change the business row *and* write the outbox event in the same transaction
(``relay.outbox.write``).

Consuming side: ``consumer`` (``relay worker orders``) subscribes the batch handler
``handle_order_events``. Its effect is one row in ``demo_order_effects`` per handled event,
written with the Postgres inbox: exactly once (the table deliberately has no unique constraint,
so a handler that ran twice for one event would be visible to the demo's checks). In the same
transaction an ``OrderPlaced`` is confirmed: the order row set to confirmed and an
``OrderConfirmed`` written through ``tx.outbox`` (consume -> effect -> publish, atomically),
its id derived from the placed event's (:func:`confirmation_id`). ``processed_events`` comes
from ``relay outbox migrate``.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from relay.consume.consumer import Consumer
from relay.consume.pg import Tx
from relay.handling import Event
from relay.headers import event_topic
from relay.outbox import OutboxEvent, write

AGGREGATE_TYPE = "order"
TOPIC = event_topic(AGGREGATE_TYPE)
APP_ID = "relay-orders"
BATCH = 500  # events per handler call (and per inbox transaction) at most
PLACED, CONFIRMED = "OrderPlaced", "OrderConfirmed"
_CONFIRMATIONS = uuid.UUID("6f1c1d0e-5a55-4c8e-9d1b-0e2f3d4c5b6a")  # uuid5 namespace of confirmation ids

SCHEMA = """
CREATE TABLE IF NOT EXISTS demo_orders (
    id text PRIMARY KEY, run_id text NOT NULL, amount_cents bigint NOT NULL,
    status text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS demo_order_effects (
    event_id uuid NOT NULL, run_id text NOT NULL, order_id text NOT NULL, seq int NOT NULL,
    type text NOT NULL, kafka_partition int NOT NULL, kafka_offset bigint NOT NULL,
    handled_at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE INDEX IF NOT EXISTS demo_order_effects_run ON demo_order_effects (run_id);
"""


def ensure_schema(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(7261)")
        conn.execute(SCHEMA)


def place_order(conn: psycopg.Connection, *, run_id: str, order_id: str, amount_cents: int) -> str:
    with conn.transaction():
        conn.execute("INSERT INTO demo_orders (id, run_id, amount_cents, status) VALUES (%s, %s, %s, 'placed')",
                     (order_id, run_id, amount_cents))
        eid = write(conn, aggregatetype=AGGREGATE_TYPE, aggregateid=order_id, type=PLACED,
                    payload={"run_id": run_id, "order_id": order_id, "seq": 1, "amount_cents": amount_cents})
    return str(eid)


def confirm_order(conn: psycopg.Connection, *, run_id: str, order_id: str) -> str:
    with conn.transaction():
        conn.execute("UPDATE demo_orders SET status='confirmed', updated_at=now() WHERE id=%s", (order_id,))
        eid = write(conn, aggregatetype=AGGREGATE_TYPE, aggregateid=order_id, type=CONFIRMED,
                    payload=_confirmed(run_id, order_id))
    return str(eid)


def confirmation_id(placed_event_id: str) -> str:
    """The id of the ``OrderConfirmed`` the consumer writes for an ``OrderPlaced``: derived, so a
    caller knows every id to expect, and a second write of it would collide rather than duplicate."""
    return str(uuid.uuid5(_CONFIRMATIONS, placed_event_id))


def _confirmed(run_id: str, order_id: str) -> dict[str, Any]:
    return {"run_id": run_id, "order_id": order_id, "seq": 2, "status": "confirmed"}


consumer = Consumer(APP_ID)


@consumer.subscribe(AGGREGATE_TYPE, inbox="postgres", batch=BATCH)
async def handle_order_events(events: list[Event], tx: Tx) -> None:
    """Record the effect of each order event and confirm each placed order: one call per batch,
    inside the transaction that also claimed every event id in ``processed_events`` (Postgres
    inbox), so effects and confirmations happen exactly once even when the worker dies between
    this commit and the table inbox record. If it raises, the list runs again in halves until a
    bad event is alone (a list of one) and takes its own retry / dead-letter path."""
    effects, confirmations = [], []
    for event in events:
        p: dict[str, Any] = event.payload or {}
        run_id, order_id = p.get("run_id", "?"), p.get("order_id", event.key or "?")
        effects.append((event.id, run_id, order_id, int(p.get("seq", 0)), event.type or "?",
                        event.partition, event.offset))
        if event.type == PLACED:
            confirmations.append(OutboxEvent(AGGREGATE_TYPE, order_id, CONFIRMED, _confirmed(run_id, order_id),
                                             event_id=confirmation_id(event.id)))
    # one statement for the whole list: its columns as arrays, unnested into rows
    await tx.send(
        "INSERT INTO demo_order_effects (event_id, run_id, order_id, seq, type, kafka_partition, kafka_offset)"
        " SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::int[], %s::text[], %s::int[], %s::bigint[])",
        [list(column) for column in zip(*effects, strict=True)])
    if confirmations:
        await tx.send("UPDATE demo_orders SET status = 'confirmed', updated_at = now() WHERE id = ANY(%s)",
                      ([c.aggregateid for c in confirmations],))
        await tx.outbox.write_many(confirmations)
