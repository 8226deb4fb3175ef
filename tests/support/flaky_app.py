"""A processor app for tests: its handler fails on purpose, as told by the database.

``relay worker tests.support.flaky_app:create_app`` with FLAKY_TOPIC=<topic>. The handler
raises a retriable TimeoutError while ``flaky_failures.remaining`` > 0 for the event id
(decrementing it), otherwise records one row in ``flaky_effects``.
"""

from __future__ import annotations

import os

import psycopg

from relay.config import Settings
from relay.handling import Event
from relay.metrics import ConsumerMetrics

SCHEMA = """
CREATE TABLE IF NOT EXISTS flaky_failures (event_id text PRIMARY KEY, remaining int NOT NULL);
CREATE TABLE IF NOT EXISTS flaky_effects (event_id text NOT NULL, key text, seq int,
                                          handled_at timestamptz NOT NULL DEFAULT clock_timestamp());
"""


async def handle(event: Event, ctx: dict) -> None:
    conn = ctx.get("conn")
    if conn is None or conn.closed:
        conn = ctx["conn"] = await psycopg.AsyncConnection.connect(ctx["dsn"], autocommit=True)
    row = await (await conn.execute(
        "UPDATE flaky_failures SET remaining = remaining - 1 WHERE event_id = %s AND remaining > 0 RETURNING remaining",
        (event.id,))).fetchone()
    if row is not None:
        raise TimeoutError(f"downstream timed out (on purpose; {row[0]} more failures planned)")
    await conn.execute("INSERT INTO flaky_effects (event_id, key, seq) VALUES (%s, %s, %s)",
                       (event.id, event.key, (event.payload or {}).get("seq")))


def flaky_workers(settings: Settings, topic: str, name: str, *, env: dict | None = None, args: tuple = ()):
    """``topic`` and this app's tables created, and (not yet started) workers of this app on it."""
    from relay.topics import apply_topics
    from tests.support.workers import Workers

    apply_topics(settings, [topic])
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
    return Workers(settings, "tests.support.flaky_app:create_app", name, env={"FLAKY_TOPIC": topic, **(env or {})},
                   args=args)


def create_app(settings: Settings, *, store: str = "memory"):
    from relay.consume._faust.app import create_app as create_faust_app
    from relay.consume._faust.agents import ConsumerSpec, add_idempotent_consumer
    topic = os.environ["FLAKY_TOPIC"]
    app = create_faust_app(settings, f"relay-flaky-{topic}", store=store)
    metrics = ConsumerMetrics.create()
    types = os.environ.get("FLAKY_TYPES")  # comma-separated: only these event types are handled
    add_idempotent_consumer(app, ConsumerSpec.from_settings(
        settings, topic=topic, handler=handle, context={"dsn": settings.dsn}, metrics=metrics,
        event_types=frozenset(types.split(",")) if types else None))
    app.relay_metrics = metrics  # type: ignore[attr-defined]
    return app
