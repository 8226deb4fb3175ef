"""Baselines measured in the same run as the relay figures: what Postgres and Kafka do on their own.

- :func:`postgres_commit_rate`: ``writers`` threads (one connection each) commit single-event
  transactions (one ``bench_business`` row + one outbox row via :func:`relay.outbox.write`) as
  fast as they can, with no relay reading: the ceiling for any relay. It writes into its own
  database ``relay_bench_raw`` on the same server (no connector, publication or poller reads it),
  so the CDC connector is not disturbed beyond sharing the server's WAL.
- :func:`kafka_throughput`: a raw confluent-kafka producer (our producer settings, acks=all,
  idempotent, linger.ms=20, lz4) into a fresh topic, then a raw consumer reading it all from the
  beginning: the ceiling of the Kafka side.

The payload has the relay benchmark's shape (``{"i": n, "pad": "xxx..."}``, ~``payload_bytes``
of JSON), so the baselines and the relay figures move the same bytes.
Run ``python -m relay.bench.raw [events] [writers]`` for a quick manual look (JSON on stdout).
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid

import psycopg
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from psycopg.conninfo import make_conninfo

from relay.config import Settings
from relay.outbox import migrate, write
from relay.topics import admin, apply_topics, producer_config

BENCH_DB = "relay_bench_raw"
AGGREGATES = 1000
_BUSINESS_DDL = ("CREATE TABLE IF NOT EXISTS bench_business (id bigserial PRIMARY KEY, aggregate text, "
                 "amount numeric, created_at timestamptz DEFAULT now())")


def _payload(i: int, payload_bytes: int) -> dict:
    return {"i": i, "pad": "x" * max(0, payload_bytes - 60)}  # same shape as relay.bench.relays


def ensure_bench_database(settings: Settings) -> str:
    """Create (superuser, once) and migrate ``relay_bench_raw``; returns the app role's DSN for it."""
    dsn = make_conninfo(settings.dsn, dbname=BENCH_DB)  # same server as settings.dsn
    try:
        psycopg.connect(dsn, connect_timeout=10).close()
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise RuntimeError(f"cannot connect to {BENCH_DB}: {exc}") from None
        from relay.stack.postgres import PostgresPart

        PostgresPart(settings).ensure_database(BENCH_DB)
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        migrate(conn, max_event_bytes=settings.max_event_bytes)
        conn.execute(_BUSINESS_DDL)
    return dsn


def _truncate(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute("TRUNCATE bench_business, outbox, outbox_avro RESTART IDENTITY")


def postgres_commit_rate(settings: Settings, *, events: int, writers: int, payload_bytes: int = 1000,
                         aggregatetype: str | None = None, timeout_s: float = 300) -> dict:
    """Commit rate of the outbox write path with no relay reading (the ceiling for CDC).

    ``writers`` threads, one connection each, commit ``events`` transactions in total, each one
    ``bench_business`` row + one outbox row (``relay.outbox.write``, aggregate ids over 1000
    aggregates). ``seconds`` runs from the threads' start to the last commit (connections are
    opened before). ``wal_bytes`` is the server's ``pg_current_wal_lsn`` delta over that interval,
    so it includes anything else the server wrote meanwhile (e.g. Debezium heartbeats; small).
    The bench tables are truncated afterwards; the database is kept.
    """
    if events < 1 or writers < 1:
        raise ValueError("events and writers must be >= 1")
    aggregatetype = aggregatetype or "bench.raw"
    dsn = ensure_bench_database(settings)
    _truncate(dsn)
    stmt_ms = int(min(timeout_s, 60) * 1000)
    conns: list[psycopg.Connection] = []
    share = [events // writers + (1 if w < events % writers else 0) for w in range(writers)]
    start, stop = threading.Barrier(writers + 1), threading.Event()
    errors: list[BaseException] = []
    done, ended = [0] * writers, [0.0] * writers

    def run(w: int) -> None:
        conn = conns[w]
        try:
            start.wait(30)
            for i in range(share[w]):
                if stop.is_set():
                    return
                n = w + i * writers
                agg = f"agg-{n % AGGREGATES}"
                with conn.transaction():
                    conn.execute("INSERT INTO bench_business (aggregate, amount) VALUES (%s, %s)", (agg, n % 997))
                    write(conn, aggregatetype=aggregatetype, aggregateid=agg, type="Bench",
                          payload=_payload(n, payload_bytes))
                done[w] += 1
            ended[w] = time.perf_counter()
        except BaseException as exc:  # noqa: BLE001 - reported to the caller below
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=run, args=(w,), name=f"bench-raw-writer-{w}", daemon=True)
               for w in range(writers)]
    try:
        for _ in range(writers):
            conns.append(psycopg.connect(dsn, connect_timeout=10, options=f"-c statement_timeout={stmt_ms}"))
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as probe:
            start_row = probe.execute("SELECT pg_current_wal_lsn()").fetchone()
            assert start_row is not None
            lsn0 = start_row[0]
            for t in threads:
                t.start()
            start.wait(30)
            t0 = time.perf_counter()
            deadline = time.monotonic() + timeout_s
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            if any(t.is_alive() for t in threads):
                stop.set()
                for t in threads:
                    t.join(70)  # a statement in flight ends by statement_timeout at the latest
                raise RuntimeError(f"postgres_commit_rate: {sum(done)}/{events} commits within {timeout_s} s "
                                   f"({writers} writers); timed out")
            if errors:
                raise RuntimeError(f"postgres_commit_rate: a writer failed after {sum(done)}/{events} commits: "
                                   f"{errors[0]!r}") from errors[0]
            diff_row = probe.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (lsn0,)).fetchone()
            assert diff_row is not None
            wal = int(diff_row[0])
    finally:
        stop.set()
        for conn in conns:
            conn.close()
        _truncate(dsn)
    seconds = max(ended) - t0
    return {"events": events, "seconds": seconds, "rate": events / seconds, "writers": writers,
            "payload_bytes": payload_bytes, "wal_bytes": wal, "wal_bytes_per_event": wal / events}


def kafka_throughput(settings: Settings, *, events: int, payload_bytes: int = 1000, partitions: int | None = None,
                     timeout_s: float = 300) -> dict:
    """Raw Kafka throughput with our producer settings, then a raw consumer reading it all back.

    Produce: ``relay.topics.producer_config`` (idempotent, acks=all) + linger.ms=20 and lz4, into a
    fresh topic ``bench.raw.<hex>`` (``partitions`` or ``settings.topic_partitions``), keys over
    1000 aggregates, an ``id`` header per record like our events; ``produce_rate`` runs from the
    first ``produce()`` to the last delivery report. Consume: a plain consumer (new group, every
    partition assigned at offset 0); ``consume_rate`` runs from the assignment to the last record.
    MB/s count payload (value) bytes, 1 MB = 10^6 bytes. The topic is deleted afterwards.
    """
    if events < 1:
        raise ValueError("events must be >= 1")
    if partitions is not None:
        settings = settings.model_copy(update={"topic_partitions": partitions})
    topic = f"bench.raw.{uuid.uuid4().hex[:12]}"
    apply_topics(settings, [topic])
    try:
        parts = len(admin(settings).list_topics(topic, timeout=30).topics[topic].partitions)
        deadline = time.monotonic() + timeout_s
        producer = Producer(producer_config(settings, **{"linger.ms": 20, "compression.type": "lz4"}))
        failures: list[str] = []
        delivered = 0
        last_delivery = 0.0

        def on_delivery(err, _msg) -> None:
            nonlocal delivered, last_delivery
            if err is not None:
                failures.append(str(err))
            else:
                delivered += 1
                last_delivery = time.perf_counter()

        values = [json.dumps(_payload(i, payload_bytes), separators=(",", ":")).encode() for i in range(events)]
        t0 = time.perf_counter()
        for i, value in enumerate(values):
            while True:
                try:
                    producer.produce(topic, value, key=f"agg-{i % AGGREGATES}".encode(),
                                     headers=[("id", str(uuid.uuid4()).encode())], on_delivery=on_delivery)
                    break
                except BufferError:  # local queue full: serve delivery reports, then retry
                    producer.poll(0.05)
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"kafka_throughput: producing {events} records timed out after "
                                           f"{timeout_s} s ({delivered} delivered)") from None
            producer.poll(0)
            if failures:
                break
        left = producer.flush(max(0.0, deadline - time.monotonic()))
        if failures:
            raise RuntimeError(f"kafka_throughput: {len(failures)} delivery errors, first: {failures[0]}")
        if left or delivered != events:
            raise RuntimeError(f"kafka_throughput: {delivered}/{events} records delivered within {timeout_s} s")
        produce_s = last_delivery - t0
        value_bytes = sum(len(v) for v in values)

        consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "enable.auto.commit": False,
                             "group.id": f"bench-raw-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"})
        try:
            c0 = time.perf_counter()
            consumer.assign([TopicPartition(topic, p, 0) for p in range(parts)])
            read, last = 0, c0
            while read < events:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"kafka_throughput: consumed {read}/{events} records within {timeout_s} s")
                for msg in consumer.consume(10_000, 0.2):
                    err = msg.error()
                    if err is None:
                        read += 1
                        last = time.perf_counter()
                    elif err.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(f"kafka_throughput: consumer error: {err.str()}")
            consume_s = last - c0
        finally:
            consumer.close()
    finally:
        _delete_topic(settings, topic)
    return {"events": events, "payload_bytes": payload_bytes,
            "produce_rate": events / produce_s, "produce_mb_s": value_bytes / 1e6 / produce_s,
            "consume_rate": events / consume_s, "consume_mb_s": value_bytes / 1e6 / consume_s}


def _delete_topic(settings: Settings, topic: str) -> None:
    try:
        client = admin(settings)  # keep a reference: the futures fail if the client is destroyed
        for future in client.delete_topics([topic], operation_timeout=30).values():
            future.result(timeout=60)
    except Exception as exc:  # noqa: BLE001 - never mask the real error
        print(f"warning: deleting topic {topic} failed: {exc}", file=sys.stderr)


def main() -> None:  # python -m relay.bench.raw [events] [writers]
    from relay.config import load_settings

    s = load_settings()
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    writers = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    print(json.dumps({"postgres": postgres_commit_rate(s, events=events, writers=writers),
                      "kafka": kafka_throughput(s, events=events)}, indent=2))


if __name__ == "__main__":
    main()
