"""A processor app for the kill and rebalance tests: each event's effect is one row in
``kill_effects``, written with the Postgres inbox (exactly once).

``relay worker tests.support.effects_app:create_app`` with EFFECTS_TOPIC=<topic>;
EFFECTS_DELAY_MS widens the window in which a SIGKILL lands mid-handling.
"""

from __future__ import annotations

import asyncio
import os

import psycopg

from relay.config import Settings
from relay.handling import Event
from relay.handling.pg_inbox import ensure_schema, pg_idempotent
from relay.metrics import ConsumerMetrics

SCHEMA = """
CREATE TABLE IF NOT EXISTS kill_effects (n bigserial PRIMARY KEY, topic text NOT NULL, event_id uuid NOT NULL,
                                         key text, seq int, worker int NOT NULL);
CREATE INDEX IF NOT EXISTS kill_effects_topic ON kill_effects (topic);
"""


def prepare(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_schema(conn)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(7262)")
            conn.execute(SCHEMA)


def create_app(settings: Settings, *, store: str = "memory"):
    from relay.consume._faust.app import create_app as create_faust_app
    from relay.consume._faust.agents import ConsumerSpec, add_idempotent_consumer

    topic = os.environ["EFFECTS_TOPIC"]
    delay = float(os.environ.get("EFFECTS_DELAY_MS", "0")) / 1000
    app_id = f"relay-effects-{topic}"

    @pg_idempotent(app_id, dsn_of=lambda ctx: ctx["dsn"])
    async def handle(event: Event, ctx: dict, conn: psycopg.AsyncConnection) -> None:
        await conn.execute("INSERT INTO kill_effects (topic, event_id, key, seq, worker) VALUES (%s, %s, %s, %s, %s)",
                           (topic, event.id, event.key, (event.payload or {}).get("seq"), os.getpid()))
        if delay:
            await asyncio.sleep(delay)

    app = create_faust_app(settings, app_id, store=store)
    metrics = ConsumerMetrics.create()
    add_idempotent_consumer(app, ConsumerSpec.from_settings(settings, topic=topic, handler=handle,
                                                            context={"dsn": settings.dsn}, metrics=metrics))
    app.relay_metrics = metrics  # type: ignore[attr-defined]
    return app
