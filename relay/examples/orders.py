"""The demo "orders" service: its own tables, the order events it publishes, and the consumer.

Publishing side: ``place_order`` / ``confirm_order`` change the business row *and* write the
outbox event in the same transaction (``relay.outbox.write``).
Consuming side: ``consumer`` (``relay worker orders``) subscribes ``handle_order_event``; its
effect is one row in ``demo_order_effects`` per handled event, written with the Postgres inbox
(exactly once; the table deliberately has no unique constraint, so a handler that ran twice for
one event would be visible to the demo's checks). ``processed_events`` comes from ``relay outbox
migrate``.
"""

from __future__ import annotations

from typing import Any

import psycopg

from relay.consume.consumer import Consumer
from relay.consume.pg import Tx
from relay.handling import Event
from relay.headers import event_topic
from relay.outbox import write

AGGREGATE_TYPE = "order"
TOPIC = event_topic(AGGREGATE_TYPE)
APP_ID = "relay-orders"

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
        eid = write(conn, aggregatetype=AGGREGATE_TYPE, aggregateid=order_id, type="OrderPlaced",
                    payload={"run_id": run_id, "order_id": order_id, "seq": 1, "amount_cents": amount_cents})
    return str(eid)


def confirm_order(conn: psycopg.Connection, *, run_id: str, order_id: str) -> str:
    with conn.transaction():
        conn.execute("UPDATE demo_orders SET status='confirmed', updated_at=now() WHERE id=%s", (order_id,))
        eid = write(conn, aggregatetype=AGGREGATE_TYPE, aggregateid=order_id, type="OrderConfirmed",
                    payload={"run_id": run_id, "order_id": order_id, "seq": 2, "status": "confirmed"})
    return str(eid)


consumer = Consumer(APP_ID)


@consumer.subscribe(AGGREGATE_TYPE, inbox="postgres")
async def handle_order_event(event: Event, tx: Tx) -> None:
    """Record the effect of one order event. Runs inside a transaction that also claims the event
    id in ``processed_events`` (Postgres inbox), so the effect is exactly once even when the
    worker dies between this commit and the table inbox record. ``tx.send``: no result needed, so
    within a batch the INSERTs are pipelined."""
    p: dict[str, Any] = event.payload or {}
    await tx.send(
        "INSERT INTO demo_order_effects (event_id, run_id, order_id, seq, type, kafka_partition, kafka_offset)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (event.id, p.get("run_id", "?"), p.get("order_id", event.key or "?"), int(p.get("seq", 0)),
         event.type or "?", event.partition, event.offset),
    )
