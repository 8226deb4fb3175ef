"""The Postgres inbox (one INSERT per event, exactly once) in a worker vs a raw psycopg loop doing
the same claims and inserts in batches of the same size, on one topic, in one run.

Workload: ``events`` JSON records produced once into a fresh topic (relay.bench.consumer.produce).
- raw: a confluent-kafka consumer takes up to ``batch`` records, then one transaction: claim every
  id in one statement (``INSERT INTO processed_events ... SELECT unnest(...) ON CONFLICT DO NOTHING
  RETURNING``), one effect row per claimed id (executemany), COMMIT, then the offsets;
- worker: ``relay worker relay.bench.pg_inbox:make_consumer`` (``inbox="postgres"``, the same
  effect INSERT per event through ``tx.send``, ``RELAY_CONSUMER_BATCH_SIZE`` = ``batch``),
  progress from its metrics.
Only the ratio means something (target 0.7, and >= 5,000 events/s on the issue's machine).

    python -m relay.bench.pg_inbox [--events N] [--batch 200] [--concurrency 1]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer

from relay.bench.consumer import delete_topics, produce
from relay.bench.worker_proc import WorkerProcess
from relay.config import Settings
from relay.handling.pg_inbox import CLAIM_ALL
from relay.topics import apply_topics

TABLE = "bench_pg_effects"
EFFECT = f"INSERT INTO {TABLE} (run, event_id) VALUES (%s, %s)"


def make_consumer(settings: Settings) -> Any:
    from relay import Consumer as RelayConsumer, Event, Tx

    topic, run = os.environ["BENCH_TOPIC"], os.environ["BENCH_RUN"]
    consumer = RelayConsumer(f"relay-bench-pg-{run}")  # a group per run: each reads the topic from the start
    if os.environ.get("BENCH_BATCH_HANDLER"):  # one call per batch: the raw loop's executemany
        @consumer.subscribe(topic=topic, inbox="postgres", batch=int(os.environ["BENCH_BATCH_HANDLER"]))
        async def effects_of(events: list[Event], tx: Tx) -> None:
            async with tx.conn.cursor() as cur:
                await cur.executemany(EFFECT, [(run, event.id) for event in events])
        return consumer

    @consumer.subscribe(topic=topic, inbox="postgres")
    async def effect(event: Event, tx: Tx) -> None:
        await tx.send(EFFECT, (run, event.id))  # no result needed: pipelined within a batch
    return consumer


def prepare(settings: Settings) -> None:
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (run text NOT NULL, event_id uuid NOT NULL)")


def effects(settings: Settings, run: str) -> int:
    with psycopg.connect(settings.dsn) as conn:
        row = conn.execute(f"SELECT count(*) FROM {TABLE} WHERE run = %s", (run,)).fetchone()
        return int(row[0]) if row else 0


def _id(msg: Any) -> str:
    raw = dict(msg.headers() or []).get("id")
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def run_raw(settings: Settings, topic: str, events: int, batch: int, deadline: float) -> dict:
    run, name = f"raw-{uuid.uuid4().hex[:8]}", f"bench-pg-raw-{uuid.uuid4().hex[:8]}"
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": name,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    count, first = 0, None
    with psycopg.connect(settings.dsn) as conn:
        while count < events:
            if time.monotonic() > deadline:
                raise TimeoutError(f"raw pg loop: {count}/{events}")
            msgs = [m for m in consumer.consume(batch, 0.5) if not m.error()]
            if not msgs:
                continue
            first = first or time.monotonic()
            ids = [_id(m) for m in msgs]
            for m in msgs:
                json.loads(m.value() or b"null")
            with conn.transaction():
                claimed = [r[0] for r in conn.execute(CLAIM_ALL, (name, ids)).fetchall()]
                with conn.cursor() as cur:
                    cur.executemany(EFFECT, [(run, eid) for eid in claimed])
            consumer.commit(asynchronous=False)
            count += len(msgs)
    consumer.close()
    end = time.monotonic()
    assert first is not None
    return {"run": "raw", "events": count, "rate": count / max(end - first, 1e-9), "effects": effects(settings, run)}


def run_worker(settings: Settings, topic: str, events: int, batch: int, concurrency: int, workdir: Path,
               deadline: float, *, batch_handler: bool = False) -> dict:
    """A worker with a per-event handler (``tx.send`` per event, batches of ``batch`` per
    transaction) or, with ``batch_handler``, a batch handler (one executemany per batch)."""
    run = f"worker-{uuid.uuid4().hex[:8]}"
    env = {"BENCH_RUN": run, "RELAY_CONSUMER_CONCURRENCY": str(concurrency)}
    env.update({"BENCH_BATCH_HANDLER": str(batch)} if batch_handler else {"RELAY_CONSUMER_BATCH_SIZE": str(batch)})
    worker = WorkerProcess(topic, "memory", workdir, name="pg", app="relay.bench.pg_inbox:make_consumer",
                           env=env).start()
    first = first_count = None
    try:
        while (count := worker.handled()) < events:
            if time.monotonic() > deadline:
                raise TimeoutError(f"pg worker: {count}/{events} (log {worker.log})")
            worker.check()
            if count and first is None:
                first, first_count = time.monotonic(), count
            time.sleep(0.05)
        end = time.monotonic()
    finally:
        worker.stop()
    assert first is not None and first_count is not None
    return {"run": "worker", "events": count, "rate": (count - first_count) / max(end - first, 1e-9),
            "effects": effects(settings, run)}


def main(argv: list[str] | None = None) -> None:
    from relay.config import load_settings

    ap = argparse.ArgumentParser(prog="python -m relay.bench.pg_inbox", description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=30_000)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args(argv)
    s, deadline = load_settings(), time.monotonic() + args.timeout
    marker = f"benchpg{uuid.uuid4().hex[:8]}"
    topic = f"outbox.event.{marker}"
    prepare(s)
    apply_topics(s, [topic])
    try:
        produce(s, topic, args.events)
        raw = run_raw(s, topic, args.events, args.batch, deadline)
        print(json.dumps(raw), flush=True)
        worker = run_worker(s, topic, args.events, args.batch, args.concurrency,
                            Path(tempfile.mkdtemp(prefix=f"relay-{marker}-")), deadline)
        print(json.dumps(worker), flush=True)
        bulk = run_worker(s, topic, args.events, args.batch, args.concurrency,
                          Path(tempfile.mkdtemp(prefix=f"relay-{marker}-")), deadline, batch_handler=True)
        print(json.dumps({**bulk, "run": "worker, batch handler"}), flush=True)
    finally:
        delete_topics(s, marker)
    print(json.dumps({"summary": {"worker/raw events/s": round(worker["rate"] / raw["rate"], 3),
                                  "batch handler/raw events/s": round(bulk["rate"] / raw["rate"], 3),
                                  "effects exactly once": raw["effects"] == worker["effects"] == bulk["effects"]
                                  == args.events}}))


if __name__ == "__main__":
    main()
