"""One subscription's record pipeline: decode -> inbox -> type filter -> handler -> outcome, with
the retry ladder, parking and dead letters. It owns its state (inbox, parking, breaker) and
executes the pure decisions of :mod:`relay.consume.routing` through a :class:`Port` (send a record,
acked). The Faust adapter (``relay.consume._faust``) and the in-memory harness (``relay.testing``)
drive the same class: what the harness proves about routing holds in a worker.

Guarantees (given a port whose ``send`` returns only once the broker acked, and a driver that
acknowledges a source offset only after :meth:`Pipeline.settled` returned for it and every
earlier record of its partition):
- at least once: a record is finished only when it was handled, recorded as a duplicate, ignored
  by type, forwarded to a retry stage or written to the dead-letter topic;
- effectively once: the inbox records an event id after its handler returned; a later copy is
  counted and skipped (a Postgres-inbox handler is exactly once: its claim commits with the effect);
- per-key order across retries (routing / parking);
- nothing escapes: undecodable records, terminal errors, rejections and exhausted retries go to
  ``T.dlq`` with the reason; a failure of the pipeline itself is dead-lettered as ``internal``, and
  when even that fails the driver's ``crash`` stops the worker (it restarts from the committed
  offset) rather than leaving the partition stuck.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any, AsyncContextManager, Awaitable, Callable, Mapping, Protocol

from relay.consume.batch import CURRENT, Abort, Batch
from relay.consume.routing import After, Attempt, DeadLetter, Delivery, Forward, Router
from relay.consume.tally import Tally
from relay.errors import DecodeError
from relay.handling.breaker import CircuitBreaker
from relay.handling.dlq import dead_letter_headers
from relay.handling.event import Event, decode_owned
from relay.handling.idempotency import Inbox
from relay.handling.parking import Parking
from relay.handling.retry import RetryPolicy
from relay.headers import Header, dlq_topic, retry_topic
from relay.metrics import ConsumerMetrics

log = logging.getLogger("relay.consumer")

Headers = list[tuple[str, bytes | None]]
# handle one event as attempt n; False: a copy the handler's own (Postgres) inbox already had
Invoke = Callable[[Event, int], Awaitable[bool]]
OpenBatch = Callable[[], AsyncContextManager[Batch]]  # a Batch whose transaction commits on exit


class Record(Protocol):
    """What the pipeline reads of a Kafka record (faust's Message and the harness's record)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None  # seconds

    @property
    def headers(self) -> Any: ...  # a mapping or a list of (name, bytes | None)


class Port(Protocol):
    async def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        """Produce one record and return once the broker acknowledged it."""

    async def crash(self, exc: BaseException) -> None:
        """The worker cannot go on (the pipeline could not even dead-letter a record)."""


def header_list(record: Record) -> Headers:
    raw = record.headers or []
    return list(raw.items()) if isinstance(raw, Mapping) else list(raw)


class Pipeline:
    """Routes every record of one source topic and its retry stages."""

    def __init__(self, *, topic: str, invoke: Invoke, inbox: Inbox, parking: Parking, policy: RetryPolicy,
                 breaker: CircuitBreaker, metrics: ConsumerMetrics, port: Port,
                 types: frozenset[str] | None = None, schemas: Any = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.topic, self.invoke, self.inbox, self.port = topic, invoke, inbox, port
        self.router, self.breaker, self.m = Router(parking, policy), breaker, metrics
        self.types, self.schemas, self.clock = types, schemas, clock
        self.stages = {n: retry_topic(topic, n) for n in range(1, len(policy.delays_s) + 1)}
        self.stage_of = {name: n for n, name in self.stages.items()}
        self.dlq = dlq_topic(topic)
        # per-record metric children, looked up once (labels() per call is a dict lookup + lock)
        self._handled, self._duplicates = metrics.handled.labels(topic), metrics.duplicates.labels(topic)
        self._ignored, self._latency = metrics.ignored.labels(topic), metrics.handler_latency.labels(topic)
        self._batch_records = metrics.batch_records.labels(topic)
        self.tally = Tally(self._handled, self._latency)  # handled count and handler latency, per batch

    def topics(self) -> list[str]:
        """Every topic this pipeline reads or writes: the source, its stages, its dead letters."""
        return [self.topic, *self.stages.values(), self.dlq]

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), timezone.utc)

    async def settled(self, record: Record) -> None:
        """:meth:`process`, and whatever escapes it (a bug, not input) still ends the record: as
        a dead letter, or, when even that fails, by the port's crash."""
        try:
            await self.settled_quietly(record)
        finally:
            self.tally.flush()

    async def settled_quietly(self, record: Record) -> None:
        """:meth:`settled` without flushing the metrics tally (a batch flushes it once at its end)."""
        try:
            await self.process(record)
        except Abort:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is routed, none escapes
            log.exception("unrouted failure on %s[%s]@%s", record.topic, record.partition, record.offset)
            try:
                attempt = dict(header_list(record)).get(Header.RETRY_ATTEMPT.value) or b"1"
                await self.dead_letter(record, "internal", exc, int(attempt), None)
            except Exception as again:  # noqa: BLE001
                await self.port.crash(again)
                raise
        finally:
            self.breaker.record_no_verdict()  # no-op unless a probe ended without calling the handler

    def committed_batch(self, records: int, call_s: float | None = None) -> None:
        """A group commit of ``records`` handled events succeeded (relay.consume.group_commit);
        ``call_s``: its batch handler's call took this long (one handler-latency observation)."""
        self._batch_records.observe(records)
        if call_s is not None:
            self.tally.observed.append(call_s)

    async def process(self, record: Record) -> None:
        """Route one record read from the source topic or one of its retry stages."""
        headers = dict(record.headers or ())  # a list of pairs (confluent-kafka) or a mapping (Faust)
        d = Delivery.read(record.key, headers, self.stage_of.get(record.topic, 0))
        action = self.router.route(d, self._now)
        if isinstance(action, Forward):
            await self.forward(record, action)
            return
        if action.lost_head:
            log.error("%s: key %s record %d waited %d times for its head or an earlier record; taking them as "
                      "lost (a worker died mid-retry) and handling it", record.topic, d.key, d.seq, d.requeues)
        finished = await self.attempt(record, d, action, headers)
        self.router.attempted(d, action, finished)

    async def attempt(self, record: Record, d: Delivery, action: Attempt,
                      headers: dict[str, bytes | None] | None = None) -> bool:
        """One handling attempt; True when finished (handled, duplicate, ignored, dead), False
        when it failed and now waits in a retry stage. ``headers``: the record's headers as a dict
        made for it alone (the event keeps it); None: made here."""
        number, first = action.number, action.first_failure
        try:
            event = decode_owned(key=record.key, value=record.value,
                                 headers=dict(record.headers or ()) if headers is None else headers,
                                 topic=self.topic, partition=record.partition, offset=record.offset,
                                 schemas=self.schemas,
                                 timestamp_ms=int(record.timestamp * 1000) if record.timestamp else None)
        except DecodeError as exc:
            await self.dead_letter(record, "decode", exc, number, first)
            return True
        if self.inbox.seen(event.id):
            self._duplicates.inc()
            return True
        if self.types is not None and event.type not in self.types:
            self._ignored.inc()  # another consumer's business: acked, not handled
            return True
        started = time.perf_counter()
        try:
            fresh = await self.invoke(event, number)
        except Exception as exc:  # noqa: BLE001 - every failure is routed, none escapes
            return await self._failed(record, d, number, exc, first)
        batch = CURRENT.get()
        if batch is None or not batch.calls_handler:  # a batch handler's call is observed once, when it ends
            self.tally.observed.append(time.perf_counter() - started)
        self.breaker.record_success()
        if batch is not None:  # its effect (or the copy it duplicates) commits with the batch: record it then
            batch.after_commit(lambda: self._recorded(event.id, record.partition, fresh), fresh=fresh)
        else:
            self._recorded(event.id, record.partition, fresh)
        return True

    def _recorded(self, event_id: str, partition: int, fresh: bool) -> None:
        now = self.clock()
        self.inbox.record(event_id, now, partition)
        self.inbox.expire(partition, now)  # here the current event is of this partition
        if fresh:
            self.tally.count += 1
        else:
            self._duplicates.inc()

    async def _failed(self, record: Record, d: Delivery, number: int, exc: Exception,
                      first: datetime | None) -> bool:
        now = self._now()
        if CURRENT.get() is not None:  # roll the batch back; the driver runs this one alone
            raise Abort() from exc
        outcome = self.router.failed(d, number, exc, now, first)
        retry = isinstance(outcome, Forward)
        self.breaker.record_failure(retry)
        self.m.handler_errors.labels(self.topic, str(retry).lower()).inc()
        if isinstance(outcome, DeadLetter):
            await self.dead_letter(record, outcome.reason, exc, number, first or now)
            return True
        log.warning("attempt %d of %s failed (%s: %s); retry stage %d in %.1fs",
                    number, d.event_id, type(exc).__name__, exc, outcome.stage, outcome.delay_s)
        await self.forward(record, outcome)
        self.m.retries.labels(self.topic, str(outcome.stage)).inc()
        return False

    async def forward(self, record: Record, f: Forward) -> None:
        headers = _strip_retry(header_list(record)) + [
            (Header.RETRY_ROLE.value, f.role.value.encode()), (Header.RETRY_ATTEMPT.value, str(f.attempt).encode()),
            (Header.RETRY_DUE_AT.value, f"{self.clock() + f.delay_s:.3f}".encode()),
            (Header.RETRY_FIRST_FAILURE_AT.value, f.first_failure.isoformat().encode())]
        if f.seq:
            headers += [(Header.RETRY_SEQ.value, str(f.seq).encode()),
                        (Header.RETRY_REQUEUES.value, str(f.requeues).encode())]
        await self.port.send(self.stages[f.stage], record.key, record.value, headers)

    async def dead_letter(self, record: Record, reason: str, exc: BaseException, attempts: int,
                          first: datetime | None) -> None:
        headers: Headers = [*dead_letter_headers(
            _strip_retry(header_list(record)), topic=self.topic, partition=record.partition, offset=record.offset,
            error=exc, attempts=attempts, first_failure_at=first, reason=reason)]
        # acked: the source offset may be acknowledged right after this returns
        await self.port.send(self.dlq, record.key, record.value, headers)
        self.m.dead_lettered.labels(self.topic, reason).inc()
        log.error("dead-lettered %s/%s@%s after %d attempt(s) (%s): %s: %s", record.topic, record.partition,
                  record.offset, attempts, reason, type(exc).__name__, exc)


def _strip_retry(headers: Headers) -> Headers:
    return [(k, v) for k, v in headers if not k.startswith("retry.")]


__all__ = ["Pipeline", "Port", "Record", "Invoke", "After", "header_list"]
