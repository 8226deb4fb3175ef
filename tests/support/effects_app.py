"""A consumer for the kill, rebalance and batch tests: each event's effect is one row in
``kill_effects``, written with the Postgres inbox (exactly once).

``relay worker tests.support.effects_app:make_consumer`` with EFFECTS_TOPIC=<topic>;
EFFECTS_DELAY_MS widens the window in which a SIGKILL lands mid-handling; EFFECTS_FLAKY_EVERY=n
makes every event whose per-key seq is n-1 mod n fail its first attempt (a retry stage);
EFFECTS_ECHO=<aggregate type> publishes one follow-up event per handled event through
``tx.outbox`` (payload ``{"source": <event id>}``), in the effect's transaction.
EFFECTS_BATCH_HANDLER=n subscribes a batch handler instead (``batch=n``, one executemany per list;
a list holding a failing event fails as a whole, then runs again in halves until it is alone).
"""

from __future__ import annotations

import asyncio
import os
import time

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
    flaky = int(os.environ.get("EFFECTS_FLAKY_EVERY", "0"))
    echo = os.environ.get("EFFECTS_ECHO")
    send = os.environ.get("EFFECTS_SEND") == "1"
    consumer = Consumer(f"relay-effects-{topic}")
    insert = "INSERT INTO kill_effects (topic, event_id, key, seq, worker) VALUES (%s, %s, %s, %s, %s)"

    def fails(event: Event, tx: Tx) -> bool:
        seq = (event.payload or {}).get("seq")
        return bool(flaky and tx.attempt == 1 and isinstance(seq, int) and seq % flaky == flaky - 1)

    if os.environ.get("EFFECTS_BATCH_HANDLER"):
        @consumer.subscribe(topic=topic, inbox="postgres", batch=int(os.environ["EFFECTS_BATCH_HANDLER"]))
        async def handle_all(events: list[Event], tx: Tx) -> None:
            failing = [e.payload["seq"] for e in events if fails(e, tx)]
            if failing:
                raise TimeoutError(f"seq {failing} fail their first attempt (on purpose)")
            async with tx.conn.cursor() as cur:
                await cur.executemany(insert, [(topic, e.id, e.key, (e.payload or {}).get("seq"), os.getpid())
                                               for e in events])
            for e in events if echo else []:
                await tx.outbox.write(aggregatetype=echo or "", aggregateid=e.key or "-", type="Echo",
                                      payload={"source": e.id})
            if delay:
                await asyncio.sleep(delay)
        return consumer

    @consumer.subscribe(topic=topic, inbox="postgres")
    async def handle(event: Event, tx: Tx) -> None:
        seq = (event.payload or {}).get("seq")
        if fails(event, tx):
            raise TimeoutError(f"seq {seq} fails its first attempt (on purpose)")
        # EFFECTS_SEND=1: Tx.send (pipelined within a batch) instead of Tx.execute
        await (tx.send if send else tx.execute)(insert, (topic, event.id, event.key, seq, os.getpid()))
        if echo:
            await tx.outbox.write(aggregatetype=echo, aggregateid=event.key or "-", type="Echo",
                                  payload={"source": event.id})
        if delay:
            await asyncio.sleep(delay)

    return consumer


def effects(settings: Settings, topic: str) -> list[tuple[str, str, int]]:
    with psycopg.connect(settings.dsn) as conn:
        return conn.execute("SELECT event_id::text, key, worker FROM kill_effects WHERE topic = %s ORDER BY n",
                            (topic,)).fetchall()


def check_effects(settings: Settings, topic: str, feed, timeout_s: float = 180) -> list:
    """Wait for every fed event's effect; assert none lost, none twice, per key in feed order."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = effects(settings, topic)
        if len({r[0] for r in rows}) >= len(feed.ids) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    ids = [r[0] for r in rows]
    lost = feed.ids - set(ids)
    assert not lost, f"{len(lost)} of {len(feed.ids)} records have no effect"
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} effects happened twice"
    for key, sent in feed.sent.items():
        assert [r[0] for r in rows if r[1] == key] == sent, f"key {key}: effects out of order"
    return rows
