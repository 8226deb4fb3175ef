"""The polling relay: publishes unpublished outbox rows with the same contract as the CDC relay.

Contract (identical to Debezium + EventRouter): topic ``outbox.event.<aggregatetype>``, key =
``aggregateid``, header ``id`` = row id (UUID text), headers ``type`` and ``aggregatetype``, value
= the payload JSON text (absent for a NULL payload); the topic of a new aggregate type is created
with the declared partitions/replication.

Guarantees:
- at least once: a row is marked ``published_at`` only after Kafka acknowledged it (acks=all,
  idempotent producer), in the same transaction that locked it. A poller killed between the
  acknowledgement and the commit publishes those rows again (duplicates, never losses).
- per-aggregate order with any number of pollers: a batch takes rows in ``seq`` order and only of
  aggregates whose transaction-scoped advisory lock it holds (``pg_try_advisory_xact_lock``), so
  two pollers never hold rows of one aggregate at once; the rows are read by a statement that
  starts after the lock was granted, hence after the previous holder committed its
  ``published_at`` marks (see HEADS/CLAIM for why one statement is not enough).
- a row that fails ``poller_max_attempts`` times gets ``failed_at`` (terminal, counted in
  metrics); it and every later row of its aggregate wait for an operator rather than being
  published out of order. Within a batch, a row that cannot be produced (e.g. too large) holds
  back the later rows of its aggregate. Failures reported asynchronously by Kafka (timeouts,
  broker errors) are partition-wide and, with the idempotent producer, never leave a later record
  of a partition delivered after an earlier one failed; the producer's ``message.max.bytes`` stays
  below the broker's so that size errors are always the synchronous kind.
- wakes on ``LISTEN relay_outbox`` and polls every ``poller_interval_s`` anyway, so a lost
  notification costs latency, never events. The outbox's statement trigger NOTIFYs only while a
  poller holds a lease in ``relay_poller_leases`` (:class:`WakeupLease`): a NOTIFY serialises
  every notifying commit in the cluster, a price CDC-only deployments should not pay.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from confluent_kafka import KafkaError, Message, Producer

from relay.config import Settings
from relay.crashpoints import CrashPoint, reach
from relay.deps import connect_postgres
from relay.errors import KafkaUnavailable
from relay.headers import Header, event_topic
from relay.outbox.schema import OUTBOX_TABLES
from relay.topics import apply_topics, producer_config

if TYPE_CHECKING:
    from relay.metrics import PollerMetrics

log = logging.getLogger("relay.poller")

NOTIFY_CHANNEL = "relay_outbox"
LEASE_S = 30.0  # a crashed poller's lease keeps writers notifying for at most this long
RENEW_S = LEASE_S / 3
AGGREGATE_LOCK_NS = 0x7265  # advisory lock namespace ("re"): (ns, hashtext(aggregate))

# Claiming is two statements. A lock decided inside the row scan is not enough: a poller's scan
# that finds aggregate X locked on row X2 can see X's lock released (the holder committed) by the
# time it reaches X3, and would publish X3 before X2. So:
# 1. HEADS: the aggregates of the oldest unpublished rows (a window of them; aggregates with a
#    terminal row are left alone), oldest first, each tried once for its transaction-scoped
#    advisory lock, until batch-size aggregates are locked.
# 2. CLAIM: a new statement, hence (READ COMMITTED) a snapshot taken after the locks were granted,
#    so the previous holder's published_at marks are visible: the unpublished rows of the locked
#    aggregates, in seq order. Per aggregate that is a prefix of its backlog. No SKIP LOCKED: only
#    the advisory lock holder claims rows, and skipping a row would break the order.
NO_TERMINAL_ROW = """NOT EXISTS (SELECT 1 FROM {table} f
                  WHERE f.aggregatetype = {alias}.aggregatetype AND f.aggregateid = {alias}.aggregateid
                    AND f.published_at IS NULL AND f.failed_at IS NOT NULL)"""
HEADS = ("""
WITH heads AS MATERIALIZED (
    SELECT aggregatetype, aggregateid, min(seq) AS head
    FROM (SELECT o.aggregatetype, o.aggregateid, o.seq FROM {table} o
          WHERE o.published_at IS NULL AND o.failed_at IS NULL AND """
         + NO_TERMINAL_ROW.format(table="{table}", alias="o") + """
          ORDER BY o.seq LIMIT %(window)s) w
    GROUP BY aggregatetype, aggregateid
    ORDER BY head
)
SELECT aggregatetype, aggregateid FROM heads
WHERE pg_try_advisory_xact_lock(%(ns)s, hashtext(aggregatetype || '/' || aggregateid))
LIMIT %(limit)s
""")
CLAIM = """
SELECT o.id::text, o.aggregatetype, o.aggregateid, o.type, {payload}, o.payload_schema, o.publish_attempts
FROM {table} o
WHERE o.published_at IS NULL AND o.failed_at IS NULL
  AND (o.aggregatetype, o.aggregateid) IN (SELECT * FROM unnest(%(types)s::text[], %(ids)s::text[]))
  AND """ + NO_TERMINAL_ROW.format(table="{table}", alias="o") + """
ORDER BY o.seq
LIMIT %(limit)s
FOR UPDATE OF o
"""
HEAD_WINDOW = 4  # heads are looked for among the oldest HEAD_WINDOW x batch size unpublished rows
# JSON payloads travel as their text, Avro payloads (bytea) as their bytes
PAYLOAD = {"outbox": "o.payload::text", "outbox_avro": "o.payload"}
MARK_PUBLISHED = ("UPDATE {table} SET published_at = now(), publish_attempts = publish_attempts + 1,"
                  " last_error = NULL WHERE id = ANY(%s::uuid[])")
# (error, message) as confluent-kafka calls on_delivery
OnDelivery = Callable[[KafkaError | None, Message], None]
MARK_FAILED = ("UPDATE {table} SET publish_attempts = publish_attempts + 1, last_error = %s,"
               " failed_at = CASE WHEN publish_attempts + 1 >= %s THEN now() END WHERE id = %s::uuid")


def produce(producer: Producer, row: tuple[Any, ...], on_delivery: OnDelivery | None = None) -> None:
    """Produce one outbox row ``(id, aggregatetype, aggregateid, type, payload text, payload_schema,
    ...)`` with the EventRouter contract; waits for room when the local queue is full."""
    eid, agg_type, agg_id, etype, payload, schema = row[:6]
    if isinstance(payload, str):
        payload = payload.encode()
    # EventRouter sends a header for every placed column, with a null value for NULL: same here
    headers = [(Header.ID.value, eid.encode()), (Header.TYPE.value, etype.encode()),
               (Header.AGGREGATE_TYPE.value, agg_type.encode()),
               (Header.PAYLOAD_SCHEMA.value, None if schema is None else schema.encode())]
    record = dict(
        topic=event_topic(agg_type), key=agg_id.encode(),
        value=payload, headers=headers, on_delivery=on_delivery)
    try:
        producer.produce(**record)
    except BufferError:  # local queue full: drain it, then this record fits
        producer.flush(30)
        producer.produce(**record)


def ensure_topics(settings: Settings, known: set[str], topics: set[str]) -> None:
    """Create the topics of new aggregate types (broker auto-creation is off), once per process:
    ``known`` remembers what was already ensured."""
    missing = topics - known
    if missing:
        apply_topics(settings, sorted(missing))
        known |= missing


def republish(settings: Settings, conn: psycopg.Connection, since: datetime) -> int:
    """Publish every outbox row created at or after ``since`` again, in ``seq`` order (gap
    reconciliation after a lost slot). Marks nothing; duplicates are expected downstream."""
    producer = Producer(producer_config(settings, **{"linger.ms": 20, "compression.type": "lz4"}))
    failures: list[str] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(err.str())

    count, topics = 0, set[str]()
    for table in OUTBOX_TABLES:
        with conn.cursor(name="relay_republish") as cur:
            cur.execute(f"SELECT id::text, aggregatetype, aggregateid, type, {PAYLOAD[table].removeprefix('o.')},"
                        f" payload_schema FROM {table} WHERE created_at >= %s ORDER BY seq", (since,))
            for row in cur:
                ensure_topics(settings, topics, {event_topic(row[1])})
                produce(producer, row, delivered)
                count += 1
    if producer.flush(120) or failures:
        raise KafkaUnavailable(f"republishing: {len(failures)} records failed ({failures[:3]}); run it again")
    return count


@dataclass
class BatchResult:
    published: int = 0
    failed: int = 0
    terminal: int = 0


@dataclass
class PollerStats:
    batches: int = 0
    published: int = 0
    failed: int = 0
    terminal: int = 0
    started: float = field(default_factory=time.monotonic)


class PollingRelay:
    def __init__(self, settings: Settings, *, metrics: PollerMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.stats = PollerStats()
        self.producer = Producer(producer_config(settings, **{"linger.ms": 2, "compression.type": "lz4"}))
        self._known_topics: set[str] = set()

    # -- one batch ---------------------------------------------------------------------------
    def publish_batch(self, conn: psycopg.Connection) -> BatchResult:
        """One batch from each outbox table (JSON, Avro); each table's batch is one transaction."""
        total = BatchResult()
        for table in OUTBOX_TABLES:
            r = self._publish_table(conn, table)
            total.published += r.published
            total.failed += r.failed
            total.terminal += r.terminal
        return total

    def _publish_table(self, conn: psycopg.Connection, table: str) -> BatchResult:
        result = BatchResult()
        with conn.transaction():
            rows = self._claim(conn, table)
            if not rows:
                return result
            ensure_topics(self.settings, self._known_topics, {event_topic(r[1]) for r in rows})
            errors: dict[str, str] = {}

            def delivered(err: KafkaError | None, msg: Message) -> None:
                if err is not None:
                    raw_id = dict(msg.headers() or [])[Header.ID.value]  # ours: always bytes (produce())
                    eid = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                    errors[eid] = f"{err.name()}: {err.str()}"

            blocked: set[tuple[str, str]] = set()
            skipped: set[str] = set()
            reach(CrashPoint.AFTER_OUTBOX_WRITE_BEFORE_PUBLISH)
            for row in rows:
                aggregate = (row[1], row[2])
                if aggregate in blocked:  # an earlier row of it failed: keep the rest back, in order
                    skipped.add(row[0])
                    continue
                try:
                    self._produce(row, delivered)
                except Exception as exc:  # noqa: BLE001 - e.g. message too large: recorded on the row
                    errors[row[0]] = f"{type(exc).__name__}: {exc}"
                    blocked.add(aggregate)
            remaining = self.producer.flush(60)
            if remaining:
                raise KafkaUnavailable(f"{remaining} records not acknowledged by Kafka within 60 s; "
                                       "rolling back (they will be published again)")
            ok = [r[0] for r in rows if r[0] not in errors and r[0] not in skipped]
            reach(CrashPoint.AFTER_PUBLISH_BEFORE_MARK_SENT)
            if ok:
                conn.execute(MARK_PUBLISHED.format(table=table), (ok,))
            for eid, error in errors.items():
                marked = conn.execute(MARK_FAILED.format(table=table) + " RETURNING failed_at IS NOT NULL",
                                      (error[:2000], self.settings.poller_max_attempts, eid)).fetchone()
                result.terminal += bool(marked and marked[0])
                log.warning("publish of %s failed: %s", eid, error)
            result.published, result.failed = len(ok), len(errors)
        self._count(result)
        return result

    def _claim(self, conn: psycopg.Connection, table: str) -> list[tuple[Any, ...]]:
        """Lock aggregates, then take their unpublished rows in ``seq`` order (see HEADS/CLAIM)."""
        batch = self.settings.poller_batch_size
        locked = conn.execute(HEADS.format(table=table),
                              {"window": batch * HEAD_WINDOW, "ns": AGGREGATE_LOCK_NS, "limit": batch}).fetchall()
        if not locked:
            return []
        types, ids = [list(col) for col in zip(*locked, strict=True)]
        return conn.execute(CLAIM.format(table=table, payload=PAYLOAD[table]),
                            {"types": types, "ids": ids, "limit": batch}).fetchall()

    def _produce(self, row: tuple[Any, ...], on_delivery: OnDelivery) -> None:
        produce(self.producer, row, on_delivery)

    def _count(self, result: BatchResult) -> None:
        s = self.stats
        s.batches += 1
        s.published += result.published
        s.failed += result.failed
        s.terminal += result.terminal
        if self.metrics is not None:
            self.metrics.observe(result)

    # -- the loop ----------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None, *, max_events: int | None = None) -> PollerStats:
        """Publish until ``stop`` is set (or ``max_events`` were published)."""
        stop = stop or threading.Event()
        conn = connect_postgres(self.settings.dsn)
        listener = connect_postgres(self.settings.dsn)
        with conn, listener:
            listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
            lease = WakeupLease(listener)
            try:
                self._loop(conn, listener, lease, stop, max_events)
            finally:
                lease.release()
        self.producer.flush(30)
        return self.stats

    def _loop(self, conn: psycopg.Connection, listener: psycopg.Connection, lease: WakeupLease,
              stop: threading.Event, max_events: int | None) -> None:
        while not stop.is_set():
            lease.keep()
            result = self.publish_batch(conn)
            if max_events is not None and self.stats.published >= max_events:
                return
            if result.published or result.failed:
                continue  # more may be waiting: go again without sleeping
            self._wait_for_notify(listener, stop)

    def _wait_for_notify(self, listener: psycopg.Connection, stop: threading.Event) -> None:
        deadline = time.monotonic() + min(self.settings.poller_interval_s, RENEW_S)
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            for _notify in listener.notifies(timeout=min(remaining, 0.5), stop_after=1):
                return


class WakeupLease:
    """This poller's row in ``relay_poller_leases``: while one unexpired lease exists, outbox
    inserts NOTIFY ``relay_outbox`` (migration 0008). Renewed at most every ``RENEW_S``; deleted
    on a clean stop (best effort: a lease that cannot be deleted expires after ``LEASE_S``)."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn  # autocommit: each statement commits at once
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.renewed = float("-inf")

    def keep(self) -> None:
        if time.monotonic() - self.renewed < RENEW_S:
            return
        self.conn.execute(
            "INSERT INTO relay_poller_leases (holder, expires_at) VALUES (%s, now() + make_interval(secs => %s))"
            " ON CONFLICT (holder) DO UPDATE SET expires_at = EXCLUDED.expires_at", (self.holder, LEASE_S))
        self.conn.execute("DELETE FROM relay_poller_leases WHERE expires_at < now() - interval '1 hour'")
        self.renewed = time.monotonic()

    def release(self) -> None:
        try:
            self.conn.execute("DELETE FROM relay_poller_leases WHERE holder = %s", (self.holder,))
        except psycopg.Error as exc:
            log.warning("could not delete the poller's wake-up lease (it expires within %.0f s): %s", LEASE_S, exc)
