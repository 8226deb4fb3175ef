"""A consumer for the kill and rebalance tests: each event's effect is one row in ``kill_effects``,
written with the Postgres inbox (exactly once).

``relay worker tests.support.effects_app:make_consumer`` with EFFECTS_TOPIC=<topic>;
EFFECTS_DELAY_MS widens the window in which a SIGKILL lands mid-handling.
"""

from __future__ import annotations

import asyncio
import os

import psycopg

from relay import Consumer, Event, Settings, Tx

SCHEMA = """
CREATE TABLE IF NOT EXISTS kill_effects (n bigserial PRIMARY KEY, topic text NOT NULL, event_id uuid NOT NULL,
                                         key text, seq int, worker int NOT NULL);
CREATE INDEX IF NOT EXISTS kill_effects_topic ON kill_effects (topic);
"""


def prepare(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(7262)")
            conn.execute(SCHEMA)


def make_consumer(settings: Settings) -> Consumer:
    topic = os.environ["EFFECTS_TOPIC"]
    delay = float(os.environ.get("EFFECTS_DELAY_MS", "0")) / 1000
    consumer = Consumer(f"relay-effects-{topic}")

    @consumer.subscribe(topic=topic, inbox="postgres")
    async def handle(event: Event, tx: Tx) -> None:
        await tx.execute("INSERT INTO kill_effects (topic, event_id, key, seq, worker) VALUES (%s, %s, %s, %s, %s)",
                         (topic, event.id, event.key, (event.payload or {}).get("seq"), os.getpid()))
        if delay:
            await asyncio.sleep(delay)

    return consumer
