"""A consumer for tests: its handler fails on purpose, as told by the database.

``relay worker tests.support.flaky_app:make_consumer`` with FLAKY_TOPIC=<topic>. The handler
raises a retriable TimeoutError while ``flaky_failures.remaining`` > 0 for the event id
(decrementing it), otherwise records one row in ``flaky_effects``. FLAKY_TYPES=a,b: only these
event types are handled.
"""

from __future__ import annotations

import os

import psycopg

from relay import Consumer, Context, Event, Settings

SCHEMA = """
CREATE TABLE IF NOT EXISTS flaky_failures (event_id text PRIMARY KEY, remaining int NOT NULL);
CREATE TABLE IF NOT EXISTS flaky_effects (event_id text NOT NULL, key text, seq int,
                                          handled_at timestamptz NOT NULL DEFAULT clock_timestamp());
"""


async def handle(event: Event, ctx: Context) -> None:
    async with ctx.pool.connection() as conn:
        row = await (await conn.execute(
            "UPDATE flaky_failures SET remaining = remaining - 1 WHERE event_id = %s AND remaining > 0 "
            "RETURNING remaining", (event.id,))).fetchone()
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
    return Workers(settings, "tests.support.flaky_app:make_consumer", name,
                   env={"FLAKY_TOPIC": topic, **(env or {})}, args=args)


def make_consumer(settings: Settings) -> Consumer:
    topic = os.environ["FLAKY_TOPIC"]
    types = os.environ.get("FLAKY_TYPES")
    consumer = Consumer(f"relay-flaky-{topic}", postgres=True)
    consumer.subscribe(topic=topic, types=types.split(",") if types else None)(handle)
    return consumer
