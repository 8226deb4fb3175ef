"""Idempotent consumer (no-op handler) on each engine vs a raw confluent-kafka loop, on one topic, in one run.

Workload: ``events`` JSON records (~200 bytes, header ``id`` = uuid4, header ``type``, keys over
1000 aggregates) produced once into a fresh ``outbox.event.bench<hex>`` topic. Then:

- raw: one confluent-kafka consumer (new group, earliest, auto commit at the default interval)
  decodes the JSON, reads the ``id`` header and keeps a dict of seen ids (a naive dedup set): the
  ceiling;
- raw-durable: the same loop with the worker's guarantees: a changelog record per new id through
  an idempotent producer, and per consumed batch the offsets committed only after those records
  were acknowledged: the baseline the worker is compared with;
- worker(store): ``relay worker relay.bench.noop_app:make_consumer --store <store>`` as a subprocess
  (own app id / group per store): ``memory`` and ``rocksdb`` on the Faust engine, ``kafka`` on the
  kafka engine (tables in memory); progress from its /metrics (``relay_events_handled_total``),
  RSS from /proc every 0.5 s; SIGTERM once every event is handled.

Rates count from the first event seen (startup excluded; ``rate_with_startup`` includes it), and
so does ``cpu_us_per_event`` (user + system time of every thread of the consumer's process, less
sensitive than rates to other load on a shared machine). The
inbox changelog size is read from the broker's data dir after the worker stopped: ``.log``
segments (what the records take), all files (active ``.index``/``.timeindex`` are preallocated
sparse files) and allocated blocks. Only ratios mean something: machines are noisy.

    python -m relay.bench.consumer [--events N] [--stores memory,rocksdb] [--timeout 900]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from relay.bench.cpu import cpu_seconds
from relay.bench.noop_app import inbox_changelog
from relay.bench.worker_proc import WorkerProcess
from relay.config import Settings
from relay.topics import admin, apply_topics, producer_config


@dataclass
class RunFigures:
    run: str  # raw | worker
    store: str | None
    events: int
    seconds: float  # first event seen -> all events handled
    rate: float  # events/s over ``seconds`` (events after the first observation)
    seconds_with_startup: float  # process/consumer start -> all events handled
    rate_with_startup: float
    peak_rss_bytes: int | None = None
    stop_seconds: float | None = None  # SIGTERM -> exit
    changelog_log_bytes: int | None = None  # inbox changelog: .log segment files
    changelog_file_bytes: int | None = None  # inbox changelog: every file's size
    changelog_disk_bytes: int | None = None  # inbox changelog: allocated blocks
    changelog_records: int | None = None  # inbox changelog: high - low watermarks
    store_bytes: int | None = None  # the worker's table data dir (rocksdb) after stop
    log_errors: int | None = None  # ERROR / Traceback lines in the worker's log
    first_error: str | None = None
    cpu_us_per_event: float | None = None  # process CPU (every thread) from the first event to the last


def produce(settings: Settings, topic: str, events: int, payload_bytes: int = 200) -> float:
    """Produce ``events`` records; returns events/s (acknowledged)."""
    producer = Producer(producer_config(settings, **{"linger.ms": 20}))
    rng = random.Random(7)
    base = len(json.dumps({"seq": 0, "aggregate": "agg-0000", "amount": 0.0, "pad": ""}))
    pad = "x" * max(0, payload_bytes - base - 8)
    errors: list[str] = []

    def delivered(err, _msg) -> None:
        if err is not None:
            errors.append(str(err))

    t0 = time.monotonic()
    for i in range(events):
        key = f"agg-{rng.randrange(1000):04d}"
        value = json.dumps({"seq": i, "aggregate": key, "amount": round(rng.random() * 1000, 2), "pad": pad})
        while True:
            try:
                producer.produce(topic, key=key.encode(), value=value.encode(), on_delivery=delivered,
                                 headers=[("id", str(uuid.uuid4()).encode()), ("type", b"BenchEvent")])
                break
            except BufferError:
                producer.poll(0.1)
        if i % 1000 == 0:
            producer.poll(0)
    if producer.flush(120) or errors:
        raise RuntimeError(f"produce failed: {len(errors)} errors {errors[:3]}, or not acknowledged in 120 s")
    return events / (time.monotonic() - t0)


def run_raw(settings: Settings, topic: str, events: int, deadline: float, *, durable: bool = False) -> RunFigures:
    """The raw loop; ``durable``: with the worker's guarantees (a changelog record per new id
    through an idempotent producer, offsets committed only after those were acknowledged, per
    consumed batch), else the naive ceiling (a dict, auto commit)."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"bench-raw-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": not durable})
    changelog = f"bench-raw-{uuid.uuid4().hex[:8]}-{topic}-changelog"
    producer = None
    if durable:
        client = admin(settings)  # kept: the futures die with it
        client.create_topics([NewTopic(changelog, settings.topic_partitions, 1,
                                       config={"cleanup.policy": "compact"})])[changelog].result(30)
        producer = Producer(producer_config(settings, **{"enable.idempotence": True, "linger.ms": 5}))
    seen: dict[str, int] = {}
    duplicates = count = first_count = 0
    started = time.monotonic()
    first, first_cpu = None, 0.0
    consumer.subscribe([topic])
    try:
        while count < events:
            if time.monotonic() > deadline:
                raise TimeoutError(f"raw consumer: {count}/{events} events before the deadline")
            for msg in consumer.consume(1000, 0.5):
                if msg.error():
                    continue
                headers = dict(msg.headers() or [])
                raw_id, value, offset = headers.get("id", b""), msg.value(), msg.offset()
                assert isinstance(raw_id, bytes) and value is not None and offset is not None  # produce()'s records
                eid = raw_id.decode()
                json.loads(value)
                if eid in seen:
                    duplicates += 1
                    continue
                seen[eid] = offset
                count += 1
                if producer is not None:
                    producer.produce(changelog, key=raw_id, value=str(time.time()).encode(),
                                     partition=msg.partition() or 0)
            if producer is not None:
                if producer.flush(60):
                    raise RuntimeError("raw durable loop: changelog records not acknowledged in 60 s")
                if count:
                    consumer.commit(asynchronous=False)
            if first is None and count:
                first, first_count, first_cpu = time.monotonic(), count, time.process_time()
        end, end_cpu = time.monotonic(), time.process_time()
    finally:
        consumer.close()
    if duplicates:
        print(f"raw consumer: {duplicates} duplicate ids", file=sys.stderr)
    assert first is not None  # set once the first event was seen
    if durable:
        client = admin(settings)
        client.delete_topics([changelog])[changelog].result(30)
    return RunFigures("raw-durable" if durable else "raw", None, count, end - first,
                      (count - first_count) / max(end - first, 1e-9), end - started, count / (end - started),
                      cpu_us_per_event=_per_event(end_cpu - first_cpu, count - first_count))


def topic_files(settings: Settings, topic: str) -> tuple[int, int, int]:
    """(.log bytes, all file bytes, allocated bytes) of ``topic``'s partition dirs in the broker."""
    data = settings.stack_dir / "kafka" / "data"
    pattern = re.compile(rf"^{re.escape(topic)}-\d+$")
    log = files = disk = 0
    for part in data.iterdir():
        if part.is_dir() and pattern.match(part.name):
            for f in part.iterdir():
                try:
                    st = f.stat()
                except FileNotFoundError:
                    continue
                files, disk = files + st.st_size, disk + st.st_blocks * 512
                log += st.st_size if f.suffix == ".log" else 0
    return log, files, disk


def record_count(settings: Settings, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "bench-watermarks"})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(hi - lo for lo, hi in (consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                                          for p in parts))
    finally:
        consumer.close()


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def run_worker(settings: Settings, topic: str, events: int, store: str, workdir: Path, deadline: float) -> RunFigures:
    worker = WorkerProcess(topic, store, workdir, engine=None if store == "kafka" else "faust").start()
    peak, first, first_count, count, first_cpu, end_cpu = 0, None, 0, 0, 0.0, 0.0
    try:
        while True:
            tick = time.monotonic()
            if tick > deadline:
                raise TimeoutError(f"worker {store}: {count}/{events} handled before the deadline (log {worker.log})")
            worker.check()
            peak = max(peak, worker.rss())
            count = worker.handled()
            if count and first is None:
                first, first_count, first_cpu = tick, count, cpu_seconds(worker.pid)
            if count >= events:
                end, end_cpu = tick, cpu_seconds(worker.pid)
                break
            time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))  # 0.5 s steps were +-8 % of a 200k run
    finally:
        stop_s = worker.stop()
    changelog = inbox_changelog(topic, store)
    log_bytes, file_bytes, disk_bytes = topic_files(settings, changelog)
    errors = worker.log_errors()
    assert first is not None  # set once the first event was handled
    return RunFigures("worker", store, count, end - first, (count - first_count) / max(end - first, 1e-9),
                      end - worker.started, count / (end - worker.started), peak, stop_s, log_bytes, file_bytes,
                      disk_bytes, record_count(settings, changelog), du(workdir / f"data-{store}"), len(errors),
                      errors[0][:300] if errors else None, _per_event(end_cpu - first_cpu, count - first_count))


def _per_event(cpu_s: float, events: int) -> float | None:
    return round(cpu_s / events * 1e6, 2) if events > 0 else None


def delete_topics(settings: Settings, marker: str) -> None:
    client = admin(settings)
    ours = [t for t in client.list_topics(timeout=30).topics if marker in t]
    for _topic, future in client.delete_topics(ours, operation_timeout=60).items() if ours else []:
        try:
            future.result()
        except Exception as exc:  # noqa: BLE001 - best effort cleanup, reported
            print(f"deleting {_topic}: {exc}", file=sys.stderr)


def show(r: RunFigures) -> str:
    return json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(r).items()})


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def main(argv: list[str] | None = None) -> None:
    from relay.config import load_settings

    ap = argparse.ArgumentParser(prog="python -m relay.bench.consumer", description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--stores", default="memory,rocksdb,kafka",
                    help="comma separated: memory, rocksdb (Faust engine), kafka (the confluent-kafka engine)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds for the whole run")
    ap.add_argument("--delete-topics", action="store_true", help="delete the run's topics at the end")
    args = ap.parse_args(argv)
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    if unknown := set(stores) - {"memory", "rocksdb", "kafka"}:
        ap.error(f"--stores: unknown {sorted(unknown)}")
    s = load_settings()
    deadline = time.monotonic() + args.timeout
    marker = f"bench{uuid.uuid4().hex[:10]}"
    topic = f"outbox.event.{marker}"
    workdir = Path(tempfile.mkdtemp(prefix=f"relay-{marker}-"))
    rows: list[RunFigures] = []
    try:
        apply_topics(s, [topic])
        rate = produce(s, topic, args.events)
        print(json.dumps({"topic": topic, "events": args.events, "partitions": s.topic_partitions,
                          "produce_rate": round(rate), "workdir": str(workdir)}), flush=True)
        rows.append(run_raw(s, topic, args.events, deadline))
        print(show(rows[-1]), flush=True)
        rows.append(run_raw(s, topic, args.events, deadline, durable=True))
        print(show(rows[-1]), flush=True)
        for store in stores:
            rows.append(run_worker(s, topic, args.events, store, workdir, deadline))
            print(show(rows[-1]), flush=True)
    finally:
        for store in stores:
            shutil.rmtree(workdir / f"data-{store}", ignore_errors=True)  # logs stay in workdir
        if args.delete_topics:
            delete_topics(s, marker)
    by = {r.store or r.run: r for r in rows}
    raw, mem, rdb, durable = by.get("raw"), by.get("memory"), by.get("rocksdb"), by.get("raw-durable")
    kafka = by.get("kafka")
    summary = {
        "events": args.events,
        "kafka/raw-durable events/s": ratio(kafka.rate if kafka else None, durable.rate if durable else None),
        # CPU per event, raw-durable / worker: 0.5 = the worker spends twice the loop's CPU per event
        "raw-durable/kafka CPU per event": ratio(durable.cpu_us_per_event if durable else None,
                                                 kafka.cpu_us_per_event if kafka else None),
        "kafka/memory events/s": ratio(kafka.rate if kafka else None, mem.rate if mem else None),
        "memory/raw-durable events/s": ratio(mem.rate if mem else None, durable.rate if durable else None),
        "memory/raw events/s": ratio(mem.rate if mem else None, raw.rate if raw else None),
        "rocksdb/raw events/s": ratio(rdb.rate if rdb else None, raw.rate if raw else None),
        "rocksdb/memory events/s": ratio(rdb.rate if rdb else None, mem.rate if mem else None),
        "rocksdb/memory events/s with startup": ratio(rdb.rate_with_startup if rdb else None,
                                                      mem.rate_with_startup if mem else None),
        "RSS rocksdb/memory": ratio(rdb.peak_rss_bytes if rdb else None, mem.peak_rss_bytes if mem else None),
        **{f"changelog .log bytes/event {r.store}": round(r.changelog_log_bytes / r.events, 1)
           for r in (mem, rdb) if r and r.events and r.changelog_log_bytes is not None},
        **{f"changelog records/event {r.store}": round(r.changelog_records / r.events, 3)
           for r in (mem, rdb) if r and r.events and r.changelog_records is not None},
    }
    print(json.dumps({"summary": summary}), flush=True)


if __name__ == "__main__":
    main()
