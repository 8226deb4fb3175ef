"""`relay bench`: the scenarios of issue 6, each next to a baseline measured in the same run.

Every scenario: a warm-up, ``reps`` repetitions sized to about ``duration`` seconds each, the
median reported; raw repetitions kept in results.json. A scenario fails the run only on an error
or a lost event, never on a figure.

Scenarios (names for ``--scenario``):
- postgres: raw commit rate of business + outbox transactions, no relay reading -> baseline C
- cdc:      Debezium + EventRouter, commit -> Kafka (R1 = relay / C), latency p50/p99
- poller:   the polling relay on the same workload (R2 = poller / C)
- routers:  EventRouter vs plain Debezium (ExtractNewRecordState) on the same commits (R3)
- kafka:    raw confluent-kafka producer / consumer for the same message size (baselines P, Q)
- consumer: the idempotent consumer on the kafka engine vs a raw confluent loop with the same
            durable guarantees (R5); the Faust engine with memory and RocksDB tables (R6)
- pg_inbox: the Postgres inbox in a worker vs a raw psycopg loop with the same claims and inserts
            in batches (target 0.7)
- latency:  commit -> handler (and commit -> Kafka) at 25/50/90 % of the measured maximum
            end-to-end rate: p50/p99/p99.9 (relay.bench.pipeline)
- scaling:  1, 2, 4 partitions and workers of one group; events/s and events per CPU-second of
            the workers and the broker; what saturates
- sagas:    completed 3-step order sagas/s at the maximum, step latency p50/p99 at 50 % of it,
            next to commit -> handler at 50 % from the latency scenario of the same run (it runs
            that scenario's 50 % load once if it has not run) (relay.bench.sagas)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import psycopg

from relay.bench import (
    consumer as consumer_bench,
    pg_inbox as pg_bench,
    pipeline,
    raw,
    relays,
    routers,
    sagas as saga_bench,
)
from relay.bench.report import Figure, ScenarioRun, median
from relay.config import Settings
from relay.outbox.schema import migrate
from relay.topics import apply_topics

POLLER_DB = "relay_poller"


class Bench:
    def __init__(self, settings: Settings, *, duration: float, reps: int, say: Callable[[str], None]) -> None:
        self.settings, self.duration, self.reps, self.say = settings, duration, reps, say
        self.baselines: dict[str, float] = {}

    def repeat(self, scenario: str, fn: Callable[[int], dict]) -> list[dict]:
        rows = []
        for rep in range(1, self.reps + 1):
            self.say(f"[{scenario}] repetition {rep}/{self.reps} ...")
            started = time.monotonic()
            row = fn(rep)
            row["wall_s"] = round(time.monotonic() - started, 2)
            self.say(f"[{scenario}] repetition {rep}/{self.reps}: " + ", ".join(
                f"{k}={v:,.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                if not isinstance(v, list)))
            rows.append(row)
        return rows

    def database(self, name: str) -> str:
        """A migrated database of our own on the stack's server (created on first use)."""
        from relay.stack.postgres import PostgresPart

        dsn = PostgresPart(self.settings).ensure_database(name)
        with psycopg.connect(dsn) as conn:
            migrate(conn, max_event_bytes=self.settings.max_event_bytes)
        return dsn


WRITERS = 4
PAYLOAD = 1000


def postgres(b: Bench) -> ScenarioRun:
    warm = raw.postgres_commit_rate(b.settings, events=2000, writers=WRITERS, payload_bytes=PAYLOAD)
    events = int(max(5000, warm["rate"] * b.duration))
    rows = b.repeat("postgres", lambda _: raw.postgres_commit_rate(
        b.settings, events=events, writers=WRITERS, payload_bytes=PAYLOAD))
    c = median([r["rate"] for r in rows])
    b.baselines["C"] = c
    return ScenarioRun("postgres", "raw Postgres commit rate (business + outbox row, no relay)", [
        Figure("postgres", "commit rate C", c, "ev/s", note=f"{WRITERS} writers, {PAYLOAD} B payload"),
        Figure("postgres", "WAL per event", median([r["wal_bytes_per_event"] for r in rows]), "B")],
        rows, bottleneck="commit fsync (one WAL flush per transaction)")


def _relay(b: Bench, name: str, dsn: str) -> ScenarioRun:
    if "C" not in b.baselines:
        postgres(b)
    events = int(max(5000, b.baselines["C"] * b.duration))
    relays.measure(b.settings, name, dsn, events=1000, writers=WRITERS, payload_bytes=PAYLOAD)  # warm-up
    results = []

    def once(_rep: int) -> dict:
        r = relays.measure(b.settings, name, dsn, events=events, writers=WRITERS, payload_bytes=PAYLOAD)
        results.append(r)
        return {k: v for k, v in asdict(r).items() if k != "latencies_ms"}

    rows = b.repeat(name, once)
    rate, c = median([r["relay_rate"] for r in rows]), b.baselines["C"]
    run = ScenarioRun(name, f"{name} relay: commit -> Kafka, writers at full speed", [
        Figure(name, "relay throughput", rate, "ev/s", "C", c, 0.85 if name == "cdc" else 0.7),
        Figure(name, "commit rate while relaying", median([r["commit_rate"] for r in rows]), "ev/s", "C", c),
        Figure(name, "commit -> Kafka p50", median([r["p50_ms"] for r in rows]), "ms"),
        Figure(name, "commit -> Kafka p99", median([r["p99_ms"] for r in rows]), "ms")],
        rows, lost=sum(r["lost"] for r in rows), duplicates=sum(r["duplicates"] for r in rows),
        series={"latency commit->kafka (ms)": results[len(results) // 2].latencies_ms})
    run.bottleneck = ("writers: the relay keeps up with the commit rate (relay/commit ~1)"
                      if median([r["relay_rate"] / r["commit_rate"] for r in rows]) > 0.95 else
                      "the relay: it falls behind the commit rate")
    return run


def cdc(b: Bench) -> ScenarioRun:
    return _relay(b, "cdc", b.settings.dsn)


def poller(b: Bench) -> ScenarioRun:
    dsn = b.database(POLLER_DB)
    env = {**os.environ, "RELAY_PG_DSN": dsn, "RELAY_POLLER_METRICS_PORT": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "relay", "outbox", "poll"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return _relay(b, "poller", dsn)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def router_vs_plain(b: Bench) -> ScenarioRun:
    if "C" not in b.baselines:
        postgres(b)
    events = int(max(5000, b.baselines["C"] * b.duration))
    plain = routers.Plain(b.settings)
    plain.start()
    try:
        routers.measure(b.settings, plain, events=1000, writers=WRITERS)  # warm-up
        rows = b.repeat("routers", lambda _: routers.measure(b.settings, plain, events=events, writers=WRITERS))
    finally:
        plain.stop()
        consumer_bench.delete_topics(b.settings, "benchrouter")
        consumer_bench.delete_topics(b.settings, f"benchplain{plain.marker}")
    er, pl = median([r["router_rate"] for r in rows]), median([r["plain_rate"] for r in rows])
    return ScenarioRun("routers", "Debezium EventRouter vs ExtractNewRecordState, same table, same commits, at once", [
        Figure("routers", "EventRouter relay (R3)", er, "ev/s", "plain", pl, 0.9),
        Figure("routers", "plain Debezium (ExtractNewRecordState)", pl, "ev/s", "C", b.baselines["C"]),
        Figure("routers", "commit rate with both reading", median([r["commit_rate"] for r in rows]), "ev/s", "C",
               b.baselines["C"])], rows, lost=sum(r["router_lost"] + r["plain_lost"] for r in rows),
        bottleneck="the writers: both connectors keep up with the commits (each ~= commit rate)"
        if min(er, pl) >= 0.95 * median([r["commit_rate"] for r in rows]) else
        "the connectors share 2 cores with the writers, the broker and each other")


def kafka(b: Bench) -> ScenarioRun:
    warm = raw.kafka_throughput(b.settings, events=20000, payload_bytes=PAYLOAD)
    events = int(min(2_000_000, max(50_000, warm["produce_rate"] * b.duration / 2)))
    rows = b.repeat("kafka", lambda _: raw.kafka_throughput(b.settings, events=events, payload_bytes=PAYLOAD))
    p, q = median([r["produce_rate"] for r in rows]), median([r["consume_rate"] for r in rows])
    b.baselines.update(P=p, Q=q)
    return ScenarioRun("kafka", "raw confluent-kafka producer and consumer, same message size", [
        Figure("kafka", "producer P (idempotent, acks=all)", p, "ev/s", note=f"{PAYLOAD} B"),
        Figure("kafka", "consumer Q", q, "ev/s"),
        Figure("kafka", "producer MB/s", median([r["produce_mb_s"] for r in rows]), "MB/s")], rows,
        bottleneck="client CPU (Python loop per record) on 2 cores")


def consumer(b: Bench) -> ScenarioRun:
    events = int(max(20_000, 2500 * b.duration))
    workdir = Path(tempfile.mkdtemp(prefix="relay-bench-consumer-"))

    def once(rep: int) -> dict:
        topic = f"outbox.event.bench{uuid.uuid4().hex[:10]}"
        (workdir / str(rep)).mkdir(parents=True, exist_ok=True)
        apply_topics(b.settings, [topic])
        consumer_bench.produce(b.settings, topic, events)
        deadline = time.monotonic() + 900
        base = consumer_bench.run_raw(b.settings, topic, events, deadline)
        durable = consumer_bench.run_raw(b.settings, topic, events, deadline, durable=True)
        kafka = consumer_bench.run_worker(b.settings, topic, events, "kafka", workdir / str(rep), deadline)
        mem = consumer_bench.run_worker(b.settings, topic, events, "memory", workdir / str(rep), deadline)
        rdb = consumer_bench.run_worker(b.settings, topic, events, "rocksdb", workdir / str(rep), deadline)
        consumer_bench.delete_topics(b.settings, topic.split(".")[-1])
        if kafka.log_errors or mem.log_errors or rdb.log_errors:
            raise RuntimeError(f"worker log errors: {kafka.first_error or mem.first_error or rdb.first_error}")
        return {"events": events, "raw_rate": base.rate, "durable_rate": durable.rate, "kafka_rate": kafka.rate,
                "memory_rate": mem.rate, "rocksdb_rate": rdb.rate, "kafka_rss": kafka.peak_rss_bytes,
                "memory_rss": mem.peak_rss_bytes, "rocksdb_rss": rdb.peak_rss_bytes, "handled_kafka": kafka.events,
                "handled_memory": mem.events, "handled_rocksdb": rdb.events}

    rows = b.repeat("consumer", once)
    raw_rate, durable, kafka, mem, rdb = (median([r[k] for r in rows]) for k in (
        "raw_rate", "durable_rate", "kafka_rate", "memory_rate", "rocksdb_rate"))
    return ScenarioRun("consumer", "idempotent consumer (no-op handler) per engine vs raw confluent loops with dedup", [
        Figure("consumer", "worker, kafka engine (R5)", kafka, "ev/s", "durable raw loop", durable, 0.5,
               note="and >= 10,000 ev/s"),
        Figure("consumer", "worker, Faust engine, memory inbox", mem, "ev/s", "kafka engine", kafka),
        Figure("consumer", "durable raw loop (changelog + commit after acks)", durable, "ev/s", "naive raw loop",
               raw_rate),
        Figure("consumer", "worker, RocksDB inbox (R6)", rdb, "ev/s", "memory", mem, 0.6),
        Figure("consumer", "peak RSS RocksDB", median([r["rocksdb_rss"] for r in rows]) / 2**20, "MiB",
               "memory", median([r["memory_rss"] for r in rows]) / 2**20)], rows,
        lost=sum(r["events"] - min(r["handled_kafka"], r["handled_memory"], r["handled_rocksdb"]) for r in rows),
        bottleneck="worker CPU on one core: the pipeline's per-record Python (decode, inbox, handler call, "
                   "changelog write); Faust's per-record path costs ~6x more")


def pg_inbox(b: Bench) -> ScenarioRun:
    events, batch = int(max(10_000, 1000 * b.duration)), 200
    pg_bench.prepare(b.settings)

    def once(rep: int) -> dict:
        marker = f"benchpg{uuid.uuid4().hex[:8]}"
        topic = f"outbox.event.{marker}"
        apply_topics(b.settings, [topic])
        deadline = time.monotonic() + 900
        try:
            consumer_bench.produce(b.settings, topic, events)
            raw = pg_bench.run_raw(b.settings, topic, events, batch, deadline)
            worker = pg_bench.run_worker(b.settings, topic, events, batch, 1,
                                         Path(tempfile.mkdtemp(prefix="relay-bench-pg-")), deadline)
            bulk = pg_bench.run_worker(b.settings, topic, events, batch, 1,
                                       Path(tempfile.mkdtemp(prefix="relay-bench-pg-")), deadline, batch_handler=True)
        finally:
            consumer_bench.delete_topics(b.settings, marker)
        return {"events": events, "raw_rate": raw["rate"], "worker_rate": worker["rate"], "bulk_rate": bulk["rate"],
                "raw_effects": raw["effects"], "worker_effects": worker["effects"], "bulk_effects": bulk["effects"]}

    rows = b.repeat("pg_inbox", once)
    raw_rate, worker, bulk = (median([r[k] for r in rows]) for k in ("raw_rate", "worker_rate", "bulk_rate"))
    baseline = f"raw psycopg loop, batches of {batch}"
    return ScenarioRun("pg_inbox", "Postgres inbox (one INSERT per event) vs a raw psycopg batch loop", [
        Figure("pg_inbox", f"worker, Postgres inbox, batch handler (batch={batch}, one executemany)", bulk, "ev/s",
               baseline, raw_rate, 0.7, note="and >= 5,000 ev/s"),
        Figure("pg_inbox", f"worker, Postgres inbox, per-event handler (tx.send, {batch} per transaction)", worker,
               "ev/s", baseline, raw_rate, None, note="each handler its own INSERT")], rows,
        lost=sum(3 * r["events"] - r["raw_effects"] - r["worker_effects"] - r["bulk_effects"] for r in rows),
        bottleneck="worker CPU: per event, the pipeline's routing and bookkeeping; with a per-event handler also "
                   "psycopg's per-statement Python cost against one executemany per batch in the raw loop")


LOADS = (0.25, 0.5, 0.9)


def latency(b: Bench) -> ScenarioRun:
    workdir = Path(tempfile.mkdtemp(prefix="relay-bench-latency-"))
    top, by_load = pipeline.latency_runs(b.settings, workdir, loads=LOADS, seconds=b.duration, reps=b.reps,
                                         writers=WRITERS, say=b.say)
    figures = [Figure("latency", "max end-to-end rate", top["e2e_rate"], "ev/s", "commit rate",
                      top["commit_rate"], note="writers at full speed", at_least=5000)]
    cpu = top["cpu_s"]
    busy = {k: v / cpu["wall"] for k, v in cpu.items() if k != "wall"}
    figures.append(Figure("latency", "cores busy at max", sum(busy.values()), "cores", note=", ".join(
        f"{k} {v:.2f}" for k, v in sorted(busy.items(), key=lambda kv: -kv[1]))))
    series = {"throughput at max": top["_throughput"]}
    rows = [{k: v for k, v in top.items() if not k.startswith("_")} | {"load": "max"}]
    for load, reps in by_load.items():
        pct = f"{load:.0%}"
        med = {k: pipeline.median_of(reps, k) for k in ("handler_p50_ms", "handler_p99_ms", "handler_p999_ms",
                                                        "kafka_p50_ms", "kafka_p99_ms", "commit_rate", "samples")}
        figures += [
            Figure("latency", f"at {pct}: achieved commit rate", med["commit_rate"], "ev/s", "max", top["e2e_rate"]),
            Figure("latency", f"at {pct}: commit -> Kafka p99", med["kafka_p99_ms"], "ms",
                   at_most=50 if load == 0.5 else None),
            Figure("latency", f"at {pct}: commit -> handler p50", med["handler_p50_ms"], "ms"),
            Figure("latency", f"at {pct}: commit -> handler p99", med["handler_p99_ms"], "ms", at_most=100),
            Figure("latency", f"at {pct}: commit -> handler p99.9", med["handler_p999_ms"], "ms", at_most=250,
                   note=f"{med['samples']:,.0f} samples per repetition")]
        middle = reps[len(reps) // 2]
        series[f"latency commit->handler at {pct} (ms)"] = middle["_latencies"]
        series[f"throughput at {pct}"] = middle["_throughput"]
        rows += [{k: v for k, v in r.items() if not k.startswith("_")} | {"load": load} for r in reps]
    half = by_load.get(0.5)
    if half:
        b.baselines["handler_p50_at_50"] = pipeline.median_of(half, "handler_p50_ms")
        b.baselines["handler_p99_at_50"] = pipeline.median_of(half, "handler_p99_ms")
    return ScenarioRun("latency", "end to end: commit -> Debezium -> Kafka -> Faust handler", figures, rows,
                       lost=sum(r["lost"] for r in rows), duplicates=top.get("duplicates", 0), series=series,
                       bottleneck=f"CPU: {sum(busy.values()):.2f} of {os.cpu_count()} cores busy at the maximum ("
                                  + ", ".join(f"{k} {v:.2f}" for k, v in sorted(busy.items(), key=lambda kv: -kv[1]))
                                  + "); near the maximum the worker gets too little of it and falls behind")


def scaling(b: Bench) -> ScenarioRun:
    workdir = Path(tempfile.mkdtemp(prefix="relay-bench-scaling-"))
    events = int(max(10_000, 1000 * b.duration))
    figures, rows = [], []
    base = None
    for n in (1, 2, 4):
        runs = pipeline.scaling_runs(b.settings, workdir, workers=n, events=events, reps=b.reps, say=b.say)
        rows += runs
        rate = pipeline.median_of(runs, "rate")
        base = base or rate
        busy = pipeline.median_of(runs, "cpu_busy")
        figures += [
            Figure("scaling", f"{n} partition(s) / worker(s)", rate, "ev/s", "1 worker", base,
                   note=f"{busy:.2f} of {os.cpu_count()} cores busy"),
            Figure("scaling", f"{n} worker(s): events per worker CPU-s", pipeline.median_of(
                runs, "worker_events_per_cpu_s"), "ev/CPU-s", at_least=3000 if n == 1 else None),
            Figure("scaling", f"{n} worker(s): events per broker CPU-s", pipeline.median_of(
                runs, "broker_events_per_cpu_s"), "ev/CPU-s")]
    cores = os.cpu_count() or 1
    top = max((r["cpu_busy"] for r in rows), default=0.0)
    return ScenarioRun("scaling", "a backlog consumed by 1, 2, 4 workers (one group, as many partitions)", figures,
                       rows, lost=sum(r["lost"] for r in rows),
                       bottleneck=(f"CPU: {top:.2f} of {cores} cores busy at the most; worker CPU per event is "
                                   "the limit (Faust's per-record path), the broker uses a fraction"
                                   if top >= 0.8 * cores else
                                   f"worker CPU on one core each ({top:.2f} of {cores} cores busy at the most)"))


def sagas(b: Bench) -> ScenarioRun:
    tops, gated, at = saga_bench.saga_runs(b.settings, seconds=b.duration, reps=b.reps, say=b.say)
    if "handler_p99_at_50" not in b.baselines:  # the same run's outbox -> handler latency at 50 %
        _top, by_load = pipeline.latency_runs(b.settings, Path(tempfile.mkdtemp(prefix="relay-bench-latency-")),
                                              loads=(0.5,), seconds=b.duration, reps=1, writers=WRITERS, say=b.say)
        b.baselines["handler_p50_at_50"] = pipeline.median_of(by_load[0.5], "handler_p50_ms")
        b.baselines["handler_p99_at_50"] = pipeline.median_of(by_load[0.5], "handler_p99_ms")
    top = median([r["sagas_per_s"] for r in tops])
    p50, p99 = median([r["step_p50_ms"] for r in at]), median([r["step_p99_ms"] for r in at])
    h50, h99 = b.baselines["handler_p50_at_50"], b.baselines["handler_p99_at_50"]
    figures = [
        Figure("sagas", "completed 3-step sagas/s at the maximum", top, "sagas/s", at_least=250,
               note=f"{saga_bench.STEPS} steps + start + end = 8 outbox events per saga"),
        Figure("sagas", "policy gate + evidence on: completed sagas/s", median([r["sagas_per_s"] for r in gated]),
               "sagas/s", "gate off", top, target=0.8,
               note="4 rules, default deny; every timeline entry chained in saga_evidence, heads published"),
        Figure("sagas", "at 50 %: achieved starts/s", median([r["start_rate"] for r in at]), "sagas/s", "max", top),
        Figure("sagas", "at 50 %: step p50", p50, "ms", "commit -> handler p50 at 50 %", h50, at_most=100),
        Figure("sagas", "at 50 %: step p99", p99, "ms", "commit -> handler p99 at 50 %", h99, at_most=500)]
    rows = ([{**r, "load": "max"} for r in tops] + [{**r, "load": "max", "gate": True} for r in gated]
            + [{**r, "load": 0.5} for r in at])
    return ScenarioRun("sagas", "order sagas (charge -> reserve -> ship) through the real pipeline", figures, rows,
                       lost=sum(r["runs"] - r["completed"] for r in rows),
                       bottleneck="a step is two trips through the pipeline (command and reply), each a commit -> "
                                  "handler latency; see the closing figures for what saturates")


SCENARIOS: dict[str, Callable[[Bench], ScenarioRun]] = {
    "postgres": postgres, "cdc": cdc, "poller": poller, "routers": router_vs_plain, "kafka": kafka,
    "consumer": consumer, "pg_inbox": pg_inbox,
    "latency": latency, "scaling": scaling, "sagas": sagas}
