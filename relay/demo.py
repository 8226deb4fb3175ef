"""`relay demo`: the walking skeleton end to end, with its own proof of exactly-once handling.

1. ensure the outbox schema, the demo tables, the topics and the connector (all idempotent);
2. start the orders worker (``relay worker orders``) as a child process and wait until a probe
   event has travelled commit -> Debezium -> Kafka -> Faust -> handler;
3. an independent observer (a plain confluent-kafka consumer, not the worker) reads the topic;
4. W writer connections place N orders, each in one transaction committing the order row and its
   OrderPlaced outbox row together; the worker confirms each placed order in its inbox
   transaction (order row, effect, OrderConfirmed through ``tx.outbox``), so every order has two
   events, the second published by the consumer;
5. D already-consumed events are re-sent by an independent producer with the same ``id`` header
   (the inbox must skip them);
6. verdict from the database and the observer: every committed event published, handled exactly
   once, per-order in commit order. Exit status 0 only then.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition

from relay.config import Settings
from relay.connect import ConnectClient, render_outbox_connector
from relay.deps import connect_postgres
from relay.errors import RelayError
from relay.headers import Header, dlq_topic
from relay.outbox import ensure_cdc_access, migrate
from relay.stack.process import ManagedProcess
from relay.topics import apply_topics, client_config, producer_config

Say = Callable[[str], None]


@dataclass
class DemoSummary:
    run_id: str
    orders: int
    writers: int = 0
    placed_s: float = 0.0  # the writers' time for the OrderPlaced transactions
    committed: int = 0  # events in the outbox: OrderPlaced (writers) + OrderConfirmed (consumer)
    published: int = 0
    published_copies: int = 0
    key_or_header_mismatches: int = 0
    consumed: int = 0
    handler_runs: int = 0
    order_violations: int = 0
    duplicates_injected: int = 0
    duplicates_skipped: int = 0
    pipeline_ready_s: float = 0.0
    warmup_orders: int = 0
    warmup_s: float = 0.0  # the warm-up's orders placed and handled (not counted in the figures)
    commit_s: float = 0.0
    end_to_end_s: float = 0.0
    latency_ms: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (self.committed > 0 and self.consumed == self.committed == self.handler_runs
                and self.published == self.committed and self.order_violations == 0
                and self.key_or_header_mismatches == 0)

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}

    def render(self) -> str:
        rate = lambda n, s, unit="events": f"{n / s:,.0f} {unit}/s" if s > 0 else "-"  # noqa: E731
        lat = self.latency_ms
        lines = [
            f"demo run {self.run_id}: {self.orders} orders, 2 events each (placed by {self.writers} writers, "
            "confirmed by the consumer)",
            f"  placed (writers)     {self.orders:>8}   "
            f"({rate(self.orders, self.placed_s, 'orders')} over {self.placed_s:.2f} s)",
            f"  committed            {self.committed:>8}   (OrderPlaced + OrderConfirmed; "
            f"{rate(self.committed, self.commit_s)} over {self.commit_s:.2f} s)",
            f"  published to Kafka   {self.published:>8}   (seen by an independent consumer; "
            f"{self.published_copies - self.published} extra copies)",
            f"  consumed (handled)   {self.consumed:>8}   (handler runs {self.handler_runs}; "
            f"end to end {rate(self.committed, self.end_to_end_s)})",
            f"  duplicates skipped   {self.duplicates_skipped:>8}   ({self.duplicates_injected} re-sent on purpose "
            "with the same id header)",
            f"  per-order violations {self.order_violations:>8}",
            f"  key/header mismatch  {self.key_or_header_mismatches:>8}",
            f"  commit -> handler    p50 {lat.get('p50', float('nan')):.0f} ms, "
            f"p99 {lat.get('p99', float('nan')):.0f} ms, max {lat.get('max', float('nan')):.0f} ms",
            f"  pipeline ready after {self.pipeline_ready_s:.1f} s (probe event handled); warm-up "
            f"{self.warmup_orders} orders in {self.warmup_s:.1f} s before the measured run (not counted)",
            "RESULT: " + ("OK - every committed event consumed exactly once, in order"
                          if self.ok else "FAILED - see the counts above"),
        ]
        return "\n".join(lines)


class TopicObserver(threading.Thread):
    """Reads ``topic`` from its current end with a plain confluent-kafka consumer (no group)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer({**client_config(settings), "group.id": "relay-demo-observer",
                                  "enable.auto.commit": False, "isolation.level": "read_committed"})
        meta = self.consumer.list_topics(topic, timeout=10).topics[topic]
        parts = []
        for p in meta.partitions:
            _low, high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            parts.append(TopicPartition(topic, p, high))
        self.consumer.assign(parts)
        self.records: dict[str, list[tuple[bytes | None, int | None, int | None]]] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            msg = self.consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            headers = dict(msg.headers() or [])
            raw_id = headers.get(Header.ID.value) or b""
            eid = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
            self.records.setdefault(eid, []).append((msg.key(), msg.partition(), msg.offset()))
        self.consumer.close()


def _scrape(settings: Settings, metric: str) -> float:
    url = f"http://{settings.host}:{settings.worker_metrics_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(metric + "{"))


def prepare_pipeline(settings: Settings, say: Say, topics: list[str],
                     schema: Callable[[psycopg.Connection[Any]], None]) -> None:
    """The outbox schema, CDC access, the demo's own tables (``schema``), its topics and the
    connector: all idempotent; returns once the connector runs."""
    with connect_postgres(settings.dsn, autocommit=False) as conn:
        migrate(conn, max_event_bytes=settings.max_event_bytes)
        ensure_cdc_access(conn, publication=settings.publication, cdc_role=settings.pg_cdc_user)
        schema(conn)
    apply_topics(settings, topics)
    client = ConnectClient.for_settings(settings)
    result = client.apply(settings.connector_name, render_outbox_connector(settings))
    client.wait_running(settings.connector_name)
    say(f"connector {settings.connector_name}: {'applied' if result.changed else 'unchanged'}, RUNNING")


def _prepare(settings: Settings, say: Say) -> None:
    from relay.examples import orders

    prepare_pipeline(settings, say, [orders.TOPIC, dlq_topic(orders.TOPIC)], orders.ensure_schema)


def _start_worker(settings: Settings, env: Mapping[str, str] | None = None) -> ManagedProcess:
    proc = ManagedProcess("worker-orders", settings.stack_dir / "pids" / "worker-orders.pid",
                          settings.stack_dir / "logs" / "worker-orders.log")
    proc.stop()  # a worker left by an interrupted demo: restart it so its counters are this run's
    proc.start([sys.executable, "-m", "relay", "worker", "orders"], env={**os.environ, **(env or {})})
    return proc


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, proc: ManagedProcess | None = None,
               poll_s: float = 0.1) -> float:
    """Seconds until ``condition()``; RelayError if ``proc`` exits or ``timeout_s`` passes first."""
    t0 = time.monotonic()
    while not condition():
        if proc is not None and proc.pid() is None:
            raise RelayError(f"the worker exited while waiting for {what}; see {proc.log_file}")
        if time.monotonic() - t0 > timeout_s:
            raise RelayError(f"timed out after {timeout_s:.0f} s waiting for {what}", retriable=True)
        time.sleep(poll_s)
    return time.monotonic() - t0


def run_demo(settings: Settings, *, orders: int, writers: int, duplicates: int, timeout_s: float,
             progress: Say, warmup: int = 0, worker_env: Mapping[str, str] | None = None) -> DemoSummary:
    """Place ``orders`` orders, have the worker handle them, re-send ``duplicates``, and judge the
    run; ``worker_env``: settings for the worker process only (e.g. the Kafka user it acts as)."""
    from relay.examples import orders as svc

    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    summary = DemoSummary(run_id=run_id, orders=orders)
    _prepare(settings, progress)
    worker = _start_worker(settings, worker_env)
    progress(f"worker started (pid {worker.pid()}, log {worker.log_file})")
    try:
        with psycopg.connect(settings.dsn, autocommit=True) as conn:
            def handled(run: str) -> int:
                # by run id (indexed): a scan of every earlier run's effects would load the machine
                # being measured, more with each run
                return one_row(conn.execute(
                    "SELECT count(DISTINCT event_id) FROM demo_order_effects WHERE run_id = %s", (run,)))[0]

            svc.place_order(conn, run_id=f"probe-{run_id}", order_id=f"probe-{run_id}", amount_cents=0)
            summary.pipeline_ready_s = wait_until(lambda: handled(f"probe-{run_id}") >= 1, timeout_s,
                                             "the probe event to be handled", worker)
            progress(f"pipeline live: probe event handled after {summary.pipeline_ready_s:.1f} s")
            if warmup:  # a cold JVM (Connect, Kafka) and cold caches cost the first seconds ~25 %
                t0 = time.monotonic()
                _commit_orders(settings, f"warmup-{run_id}", warmup, writers)
                wait_until(lambda: handled(f"warmup-{run_id}") == 2 * warmup, timeout_s, "the warm-up orders", worker,
                      poll_s=0.25)
                summary.warmup_orders, summary.warmup_s = warmup, time.monotonic() - t0
                progress(f"warm-up: {warmup} orders placed and handled in {summary.warmup_s:.1f} s")

            observer = TopicObserver(settings, svc.TOPIC)
            observer.start()
            placed = _commit_orders(settings, run_id, orders, writers)
            summary.writers, summary.placed_s = writers, placed.elapsed
            progress(f"placed {len(placed)} orders from {writers} connections in {placed.elapsed:.2f} s")
            ids = [*placed, *(svc.confirmation_id(eid) for eid in placed)]
            wait_until(lambda: handled(run_id) == len(ids), timeout_s, "every event to be handled", worker, poll_s=0.25)
            summary.end_to_end_s = _last_handled(conn, run_id) - placed.started_at  # not the poll's timing
            summary.committed, summary.commit_s = _committed(conn, ids, placed.started_at)

            summary.duplicates_injected = _inject_duplicates(settings, conn,
                                                             random.sample(ids, min(duplicates, len(ids))))
            if duplicates:
                wait_until(lambda: _scrape(settings, "relay_inbox_duplicates_total") >= summary.duplicates_injected,
                      30, "the re-sent duplicates to be skipped", worker)
            summary.duplicates_skipped = int(_scrape(settings, "relay_inbox_duplicates_total"))
            time.sleep(0.5)  # let the observer drain what has just been handled
            observer.stopping.set()
            observer.join(10)
            _verdict(conn, summary, observer, run_id, set(ids))
    finally:
        worker.stop(sig=signal.SIGTERM, grace_s=20)
        progress("worker stopped")
    return summary


class _Ids(list):
    started: float  # monotonic
    started_at: float  # epoch seconds
    elapsed: float


def _last_handled(conn: psycopg.Connection, run_id: str) -> float:
    """Epoch seconds of the run's last first-handling (the handler's clock_timestamp())."""
    return float(one_row(conn.execute("SELECT extract(epoch FROM max(handled_at)) FROM demo_order_effects"
                                   " WHERE run_id = %s", (run_id,)))[0])


def _committed(conn: psycopg.Connection, ids: list[str], started_at: float) -> tuple[int, float]:
    """How many of ``ids`` are in the outbox, and the seconds from ``started_at`` to the last commit."""
    n, last = one_row(conn.execute(
        "SELECT count(*), extract(epoch FROM max(created_at)) FROM outbox WHERE id = ANY(%s)", (ids,)))
    return n, max(float(last or started_at) - started_at, 1e-3)


def _commit_orders(settings: Settings, run_id: str, orders: int, writers: int) -> _Ids:
    from relay.examples import orders as svc

    order_ids = [f"{run_id}-{i:06d}" for i in range(orders)]
    chunks = [order_ids[i::writers] for i in range(writers)]

    def write_chunk(chunk: list[str]) -> list[str]:
        out = []
        with psycopg.connect(settings.dsn) as conn:
            for oid in chunk:
                out.append(svc.place_order(conn, run_id=run_id, order_id=oid, amount_cents=random.randint(100, 99_999)))
        return out

    ids = _Ids()
    ids.started, ids.started_at = time.monotonic(), time.time()
    with ThreadPoolExecutor(writers) as pool:
        for chunk_ids in pool.map(write_chunk, chunks):
            ids.extend(chunk_ids)
    ids.elapsed = time.monotonic() - ids.started
    return ids


def _inject_duplicates(settings: Settings, conn: psycopg.Connection, ids: list[str]) -> int:
    """Re-send events as an outside producer would: same key, value and ``id`` header."""
    if not ids:
        return 0
    # lz4, as the polling relay sends: the worker must decode every codec a producer may use
    producer = Producer(producer_config(settings, **{"compression.type": "lz4"}))
    rows = conn.execute("SELECT id::text, aggregatetype, aggregateid, type, payload::text FROM outbox"
                        " WHERE id = ANY(%s)", (ids,)).fetchall()
    for eid, agg_type, agg_id, etype, payload in rows:
        producer.produce(f"outbox.event.{agg_type}", key=agg_id.encode(), value=payload.encode(),
                         headers=[(Header.ID.value, eid.encode()), (Header.TYPE.value, etype.encode())])
    if producer.flush(30) != 0:
        raise RelayError("re-sending duplicates: not every record was acknowledged within 30 s", retriable=True)
    return len(rows)


def one_row(cur: psycopg.Cursor[Any]) -> Any:
    """The row of a query that always returns exactly one (an aggregate without GROUP BY)."""
    row = cur.fetchone()
    assert row is not None, "an aggregate query returns one row"
    return row


def _verdict(conn: psycopg.Connection, s: DemoSummary, observer: TopicObserver, run_id: str, ids: set[str]) -> None:
    s.consumed, s.handler_runs = one_row(conn.execute(
        "SELECT count(DISTINCT event_id), count(*) FROM demo_order_effects WHERE run_id = %s", (run_id,)))
    # per order: the first handling of each event must follow commit order (seq 1 then 2)
    s.order_violations = one_row(conn.execute(
        "SELECT count(*) FROM (SELECT order_id, array_agg(seq ORDER BY first_at) AS seqs FROM ("
        "  SELECT order_id, seq, min(handled_at) AS first_at FROM demo_order_effects WHERE run_id = %s"
        "  GROUP BY order_id, seq) f GROUP BY order_id) o WHERE seqs <> ARRAY[1, 2]", (run_id,)))[0]
    p50, p99, mx = one_row(conn.execute(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY ms),"
        " max(ms) FROM (SELECT extract(epoch FROM min(e.handled_at) - o.created_at) * 1000 AS ms"
        " FROM demo_order_effects e JOIN outbox o ON o.id = e.event_id WHERE e.run_id = %s"
        " GROUP BY e.event_id, o.created_at) l", (run_id,)))
    s.latency_ms = {"p50": p50, "p99": p99, "max": mx}
    seen = {eid: recs for eid, recs in observer.records.items() if eid in ids}
    s.published = len(seen)
    s.published_copies = sum(len(r) for r in seen.values())
    keys: dict[str, str] = dict(conn.execute("SELECT id::text, aggregateid FROM outbox WHERE id = ANY(%s)",
                                             (list(ids),)).fetchall())
    s.key_or_header_mismatches = sum(1 for eid, recs in seen.items() for key, _p, _o in recs
                                     if key is None or key.decode() != keys.get(eid))
