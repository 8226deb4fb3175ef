"""End to end through the real pipeline: commit -> Debezium (EventRouter) -> Kafka -> Faust worker
(idempotent consumer, memory inbox, no-op handler that logs when it ran).

- :func:`latency_runs`: the maximum end-to-end rate (writers at full speed), then open-loop paced
  writers at fractions of it; per event, latency = handler clock - outbox ``created_at`` (one
  machine, one clock), commit -> Kafka from an independent consumer. Percentiles are exact (every
  sample kept and sorted), so p99.9 needs >= 1,000 samples to mean anything; the count is reported.
  ``created_at`` is the transaction's start: a writer that falls behind its schedule starts later,
  so overload shows as lower achieved rate rather than as latency (coordinated omission; the
  achieved commit rate is reported next to every latency).
- :func:`scaling_runs`: a backlog consumed by 1, 2, 4 workers of one group on a topic with as many
  partitions; events/s and CPU seconds per process (relay.bench.cpu).
Every run checks that each committed/produced event was handled (lost) and counts duplicates.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psycopg
from confluent_kafka import Consumer, ConsumerGroupState, TopicPartition

from relay.bench import consumer as consumer_bench
from relay.bench.cpu import Meter, stack_pids
from relay.bench.noop_app import app_id
from relay.bench.relays import _observe
from relay.bench.worker_proc import WorkerProcess
from relay.config import Settings
from relay.consume._faust.gapfill import GapReader
from relay.headers import event_topic
from relay.outbox import write
from relay.topics import admin, apply_topics


def percentiles(values: list[float]) -> dict[str, float]:
    """Exact p50 / p99 / p99.9 / max (nearest rank) of ``values``."""
    if not values:
        return {"p50": float("nan"), "p99": float("nan"), "p999": float("nan"), "max": float("nan"), "n": 0}
    v = sorted(values)

    def rank(q: float) -> float:
        return v[min(len(v) - 1, max(0, int(q * len(v) + 0.5) - 1))]

    return {"p50": rank(0.5), "p99": rank(0.99), "p999": rank(0.999), "max": v[-1], "n": len(v)}


def paced(dsn: str, body: Callable[[psycopg.Connection[Any], int, int], str], *, writers: int,
          count: int | None = None, rate: float | None = None, seconds: float | None = None,
          ) -> tuple[list[str], float]:
    """Run ``body(conn, writer, i)`` in its own transaction from ``writers`` connections:
    ``count`` times at full speed, or for ``seconds`` at ``rate`` per second (open loop, each
    writer on its own schedule). Returns (what the bodies returned, achieved calls/s)."""
    out: list[list[str]] = [[] for _ in range(writers)]
    t0 = time.monotonic() + 0.05

    def run(w: int) -> None:
        interval = writers / rate if rate else 0.0
        with psycopg.connect(dsn) as conn:
            i = 0
            while count is None or i < count // writers:
                due = t0 + (i + w / writers) * interval
                if seconds is not None and due - t0 >= seconds:
                    return
                if interval and (wait := due - time.monotonic()) > 0:
                    time.sleep(wait)
                with conn.transaction():
                    out[w].append(body(conn, w, i))
                i += 1

    threads = [threading.Thread(target=run, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [e for chunk in out for e in chunk]
    return flat, len(flat) / max(time.monotonic() - t0, 1e-9)


def commit(dsn: str, aggregatetype: str, *, writers: int, events: int | None = None, rate: float | None = None,
           seconds: float | None = None, payload_bytes: int = 1000) -> tuple[list[str], float]:
    """Commit single-event transactions (business row stand-in + outbox row): see :func:`paced`.
    Returns (event ids, achieved events/s)."""
    pad = "x" * max(0, payload_bytes - 60)

    def one(conn: psycopg.Connection[Any], w: int, i: int) -> str:
        return str(write(conn, aggregatetype=aggregatetype, aggregateid=f"w{w}-{i % 50}", type="Bench",
                         payload={"i": i, "pad": pad}))

    return paced(dsn, one, writers=writers, count=events, rate=rate, seconds=seconds)


def created_at(dsn: str, ids: list[str]) -> dict[str, float]:
    with psycopg.connect(dsn) as conn:
        return {r[0]: float(r[1]) for r in conn.execute(
            "SELECT id::text, extract(epoch FROM created_at) FROM outbox WHERE id = ANY(%s::uuid[])", (ids,))}


@dataclass
class Pipeline:
    """One fresh routed topic and a worker on it, logging when its handler ran."""

    settings: Settings
    workdir: Path
    marker: str = field(default_factory=lambda: f"benche2e{uuid.uuid4().hex[:8]}")

    def __post_init__(self) -> None:
        self.topic = event_topic(self.marker)
        self.log = self.workdir / f"{self.marker}.handled"
        self.worker = WorkerProcess(self.topic, "memory", self.workdir, name=self.marker,
                                    env={"BENCH_HANDLED_LOG": str(self.log)})
        self._read = 0
        self.handled: dict[str, float] = {}
        self.duplicates = 0

    def start(self, timeout_s: float = 120) -> None:
        apply_topics(self.settings, [self.topic])
        self.worker.start()
        probe, _ = commit(self.settings.dsn, self.marker, writers=1, events=1)
        self.wait(probe, timeout_s)

    def _drain_log(self) -> None:
        if not self.log.exists():
            return
        with self.log.open(encoding="utf-8") as fh:
            fh.seek(self._read)
            chunk = fh.read()
        complete = chunk[:chunk.rfind("\n") + 1]
        self._read += len(complete.encode())
        for line in complete.splitlines():
            eid, at = line.split()
            if eid in self.handled:
                self.duplicates += 1
            else:
                self.handled[eid] = float(at)

    def wait(self, ids: list[str], timeout_s: float) -> list[str]:
        """Wait until every id was handled; returns the ones that were not (lost) at the deadline."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.worker.check()
            self._drain_log()
            missing = [e for e in ids if e not in self.handled]
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.2)

    def stop(self) -> None:
        self.worker.stop()
        consumer_bench.delete_topics(self.settings, self.marker)


def _one_load(p: Pipeline, rate: float | None, seconds: float, events: int, writers: int,
              observe_kafka: bool) -> dict:
    arrivals: list = []
    stop = threading.Event()
    observer = None
    if observe_kafka:
        observer = threading.Thread(target=_observe, args=(p.settings, p.topic, 0, stop, arrivals), daemon=True)
        observer.start()
        time.sleep(0.5)  # assigned before the first commit
    meter = Meter({**stack_pids(p.settings), "worker": p.worker.pid})
    before = meter.take()
    t0 = time.time()
    ids, achieved = commit(p.settings.dsn, p.marker, writers=writers, rate=rate,
                           seconds=seconds if rate else None, events=None if rate else events)
    lost = p.wait(ids, 300)
    cpu = meter.since(before)
    stop.set()
    if observer is not None:
        observer.join(10)
    born = created_at(p.settings.dsn, ids)
    latency = [(p.handled[e] - born[e]) * 1000 for e in ids if e in p.handled and e in born]
    last = max((p.handled[e] for e in ids if e in p.handled), default=time.time())
    row: dict[str, Any] = {
        "target_rate": rate, "events": len(ids), "commit_rate": achieved, "e2e_rate": len(ids) / (last - t0),
        "lost": len(lost), "cpu_s": cpu,
        "cores_busy": round(sum(v for k, v in cpu.items() if k != "wall") / cpu["wall"], 2),
        **{f"handler_{k}_ms" if k != "n" else "samples": v for k, v in percentiles(latency).items()}}
    if observe_kafka:
        first: dict[str, float] = {}
        for at, d in arrivals:
            first.setdefault(d.event_id, at)
        kafka = percentiles([(first[e] - born[e]) * 1000 for e in ids if e in first and e in born])
        row.update({f"kafka_{k}_ms": v for k, v in kafka.items() if k != "n"})
    row["_latencies"] = latency
    row["_throughput"] = per_second([p.handled[e] - t0 for e in ids if e in p.handled])
    return row


def per_second(offsets_s: list[float], bucket_s: float = 0.5) -> list[list[float]]:
    """[[t, events/s]] over ``bucket_s`` buckets of event times (seconds from the run's start)."""
    if not offsets_s:
        return []
    counts = [0] * (int(max(offsets_s) / bucket_s) + 1)
    for t in offsets_s:
        counts[max(0, int(t / bucket_s))] += 1
    return [[round(i * bucket_s, 2), c / bucket_s] for i, c in enumerate(counts)]


def latency_runs(settings: Settings, workdir: Path, *, loads: tuple[float, ...], seconds: float, reps: int,
                 writers: int, say) -> tuple[dict, dict[float, list[dict]]]:
    """(max-rate row, {load: [row per repetition]})."""
    p = Pipeline(settings, workdir)
    try:
        p.start()
        _one_load(p, None, 0, 1000, writers, False)  # warm-up
        events = int(max(3000, 1500 * seconds))
        top = _one_load(p, None, 0, events, writers, True)
        say(f"[latency] max end-to-end {top['e2e_rate']:,.0f} ev/s (commit {top['commit_rate']:,.0f} ev/s)")
        out: dict[float, list[dict]] = {}
        for load in loads:
            rate = load * top["e2e_rate"]
            out[load] = []
            for rep in range(1, reps + 1):
                row = _one_load(p, rate, seconds, 0, writers, True)
                out[load].append(row)
                say(f"[latency] {load:.0%} of max ({rate:,.0f} ev/s) repetition {rep}/{reps}: handler p50 "
                    f"{row['handler_p50_ms']:.0f} p99 {row['handler_p99_ms']:.0f} p99.9 {row['handler_p999_ms']:.0f} "
                    f"ms, kafka p99 {row['kafka_p99_ms']:.0f} ms, lost {row['lost']}")
        top["duplicates"] = p.duplicates
        return top, out
    finally:
        p.stop()


def _group_stable(client, group: str, members: int) -> bool:
    try:
        desc = client.describe_consumer_groups([group], request_timeout=5)[group].result(timeout=10)
    except Exception:  # noqa: BLE001 - not there yet (the request may hang before the group exists)
        return False
    return desc.state == ConsumerGroupState.STABLE and len(desc.members) == members


def _lag(reader: GapReader, probe: Consumer, topic: str, partitions: int) -> int:
    """Records of ``topic`` past its group's committed offsets (``reader`` carries the group id)."""
    committed = reader.committed_many([(topic, p) for p in range(partitions)])
    return sum(max(0, probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] - committed[(topic, p)])
               for p in range(partitions))


def _warm_up(settings: Settings, topic: str, procs: list[WorkerProcess], *, events: int,
             stall_s: float = 60.0) -> None:
    """A small backlog every worker must take part in before anything is measured. Nobody
    restarts a worker: a partition faust-streaming fetched past without handing it over (a fetch
    spanning the rebalance) is sought back by the worker's own watchdog within seconds; no progress
    for ``stall_s`` is an error."""
    consumer_bench.produce(settings, topic, events)
    group = app_id(topic, "memory")
    reader = GapReader(settings.bootstrap_servers, group)  # reads the group's committed offsets, never joins
    probe = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"{group}-probe"})
    try:
        _wait_caught_up(reader, probe, topic, settings.topic_partitions, procs, stall_s)
    finally:
        probe.close()


def _wait_caught_up(reader: GapReader, probe: Consumer, topic: str, partitions: int, procs: list[WorkerProcess],
                    stall_s: float) -> None:
    last, since = -1, time.monotonic()
    while (count := _lag(reader, probe, topic, partitions)) > 0:
        for w in procs:
            w.check()
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since > stall_s:
            raise RuntimeError(f"{len(procs)} workers made no progress for {stall_s:.0f} s with {count} records "
                               "waiting")
        time.sleep(0.2)


def scaling_runs(settings: Settings, workdir: Path, *, workers: int, events: int, reps: int, say) -> list[dict]:
    """``workers`` workers (one group) on a topic with ``workers`` partitions: ``reps`` backlogs of
    ``events`` each; events/s and CPU seconds of each worker, the broker and this process."""
    marker = f"benchscale{workers}{uuid.uuid4().hex[:6]}"
    topic = event_topic(marker)
    scaled = settings.model_copy(update={"topic_partitions": workers})
    apply_topics(scaled, [topic])
    procs = [WorkerProcess(topic, "memory", workdir, name=f"{marker}-{n}",
                           env={"RELAY_TOPIC_PARTITIONS": str(workers)}).start()
             for n in range(workers)]
    meter = Meter(stack_pids(settings))
    rows = []
    try:
        deadline, client = time.monotonic() + 120, admin(settings)
        while not _group_stable(client, app_id(topic, "memory"), workers):
            for w in procs:
                w.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{workers} workers did not form a stable group in 120 s")
            time.sleep(0.5)
        _warm_up(scaled, topic, procs, events=max(1000, events // 10))
        total = sum(w.handled() for w in procs)
        for n, w in enumerate(procs):
            meter.add(f"worker{n}", w.pid)
        for rep in range(1, reps + 1):
            before = meter.take()
            consumer_bench.produce(scaled, topic, events)
            total += events
            count = 0
            while count < total:
                for w in procs:
                    w.check()
                count = sum(w.handled() for w in procs)
                if time.monotonic() > deadline + 600:
                    raise TimeoutError(f"scaling {workers}: {count}/{total} handled")
                time.sleep(0.1)
            cpu = meter.since(before)
            done, wall = events, cpu["wall"]
            worker_cpu = sum(v for k, v in cpu.items() if k.startswith("worker"))
            row = {"workers": workers, "events": done, "rate": done / wall, "wall_s": wall, "cpu_s": cpu,
                   "worker_events_per_cpu_s": done / max(worker_cpu, 1e-9),
                   "broker_events_per_cpu_s": done / max(cpu.get("kafka", 0), 1e-9),
                   "cpu_busy": (worker_cpu + cpu.get("kafka", 0) + cpu.get("connect", 0) + cpu.get("postgres", 0)
                                + cpu["bench"]) / wall, "lost": max(0, total - count)}
            rows.append(row)
            say(f"[scaling] {workers} worker(s) repetition {rep}/{reps}: {row['rate']:,.0f} ev/s, "
                f"{row['worker_events_per_cpu_s']:,.0f} ev per worker CPU-s, {row['cpu_busy']:.2f} cores busy")
    finally:
        for w in procs:
            w.stop()
        consumer_bench.delete_topics(settings, marker)
    return rows


def median_of(rows: list[dict], key: str) -> float:
    return statistics.median([r[key] for r in rows]) if rows else float("nan")
