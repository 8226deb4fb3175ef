"""The idempotent consumer: decode -> inbox check -> handler -> inbox record, with a retry
ladder that keeps per-key order, and dead letters.

Topics per source topic T: the stages ``T.retry.1 .. T.retry.n`` (one fixed delay each, from the
RetryPolicy) and ``T.dlq``. One agent reads T, one agent per stage reads that stage.

Each agent runs Faust concurrency 1 and hands records to ``spec.concurrency`` lanes by key
(relay.consume._faust.lanes: per-key order, bounded in flight per partition, acks in offset order; Faust's
own concurrency commits past in-flight events, faust-streaming#606). A circuit breaker over the
handler stops taking records after ``breaker_failures`` consecutive retriable failures, then
probes with one record (relay.handling.breaker).

Guarantees:
- at least once: an offset is acknowledged only after its record, and every earlier record of
  its partition, was handled, recorded as a
  duplicate, forwarded to a retry stage or written to the dead-letter topic (Faust flushes the
  producer before committing offsets);
- effectively once: the inbox (a table with a compacted changelog, co-partitioned with T, keyed
  by event id) is written after the handler returned; a later copy is counted and skipped;
- per-key order across retries: while an event of key K waits in a stage, later events of K are
  forwarded behind it (relay.handling.parking) and handled after it, in order; other keys flow;
- nothing escapes: undecodable records, terminal errors and exhausted retries go to ``T.dlq``
  with the reason (relay.handling.dlq). Faust would otherwise ack and skip a record whose agent
  raised.
- nothing skipped: Faust can hand over a partition with a hole after an assignment (a prefetch
  that lands after the seek to committed; relay.handling.continuity). Each agent compares every
  record's offset with the committed offset at assignment / the last one handled and first
  handles the records of a hole, read independently (relay.consume._faust.guard); a one-offset hole
  mid-stream is a transaction marker and is not read (relay.handling.continuity).
Stage topics must have T's partition count (``relay topics apply`` / ``relay worker`` create
them) so that a key lands on the same partition number and the parking table sees it. Verified
with one worker; several workers rely on Faust assigning co-partitioned topics together.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import weakref
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Iterator, MutableMapping

import faust

from relay.consume._faust.gapfill import GapReader
from relay.consume._faust.gauges import Delivered, Gauges
from relay.consume._faust.guard import ContinuityGuard
from relay.consume._faust.lanes import Lanes
from relay.consume._faust.preflight import needs_database
from relay.consume._faust.waits import Waits
from relay.errors import DecodeError
from relay.handling import Event, Inbox, decode
from relay.handling.breaker import BreakerState, CircuitBreaker
from relay.handling.dlq import dead_letter_headers
from relay.handling.parking import ParkedKey, Parking, Route
from relay.handling.pg_inbox import DUPLICATE, PgIdempotent
from relay.handling.retry import RetryPolicy, Verdict
from relay.headers import Header, dlq_topic, retry_topic
from relay.metrics import ConsumerMetrics

log = logging.getLogger("relay.consumer")

# its result (or what it resolves to) is ignored, except DUPLICATE: a copy its own inbox already had
Handler = Callable[[Event, Any], Awaitable[object] | object]
HEAD, BEHIND = b"head", b"behind"
REQUEUE_S, MAX_REQUEUES = 0.2, 600  # a behind record waits for its turn at most ~2 minutes
BREAKER_GAUGE = {BreakerState.CLOSED: 0, BreakerState.OPEN: 1, BreakerState.HALF_OPEN: 2}


@dataclass
class ConsumerSpec:
    topic: str
    handler: Handler
    context: Any
    metrics: ConsumerMetrics
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    schemas: Any = None  # relay.schemas.SchemaRegistry for binary Avro; default: the repo's
    inbox_window_s: float = 7 * 24 * 3600
    event_types: frozenset[str] | None = None  # only these `type` headers reach the handler
    concurrency: int = 1  # lanes per agent (relay.consume._faust.lanes)
    max_in_flight: int = 64  # per partition
    breaker_failures: int = 5
    breaker_open_s: float = 5.0

    @classmethod
    def from_settings(cls, settings: Any, **fields: Any) -> "ConsumerSpec":
        """A spec with the consumer settings (RELAY_CONSUMER_*, RELAY_BREAKER_*, retry ladder, dedup
        window) taken from ``settings``; ``fields`` gives topic, handler, context, metrics, ..."""
        return cls(policy=RetryPolicy.parse(settings.retry_delays), inbox_window_s=settings.inbox_window_s,
                   concurrency=settings.consumer_concurrency, max_in_flight=settings.consumer_max_in_flight,
                   breaker_failures=settings.breaker_failures, breaker_open_s=settings.breaker_open_s,
                   **fields)

    def topics(self) -> list[str]:
        """Every topic this consumer reads or writes besides its changelogs."""
        stages = [retry_topic(self.topic, n) for n in range(1, len(self.policy.delays_s) + 1)]
        return [self.topic, *stages, dlq_topic(self.topic)]


class _ParkedTable(MutableMapping[str, ParkedKey | None]):
    """ParkedKey values stored as plain dicts in a Faust table (JSON changelog)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def __getitem__(self, key: str) -> ParkedKey | None:
        raw = self.table[key]
        return None if raw is None else ParkedKey(**raw)

    def get(self, key: str, default: Any = None) -> Any:
        raw = self.table.get(key)
        return default if raw is None else ParkedKey(**raw)

    def __setitem__(self, key: str, value: ParkedKey | None) -> None:
        self.table[key] = None if value is None else asdict(value)

    def __delitem__(self, key: str) -> None:
        self.table[key] = None

    def __iter__(self) -> Iterator[str]:
        return iter(self.table)

    def __len__(self) -> int:
        return len(self.table)

    # a list rather than a ValuesView: one pass over the Faust table
    def values(self) -> list[ParkedKey | None]:  # type: ignore[override]
        return [None if v is None else ParkedKey(**v) for v in self.table.values()]


def _raw_topic(app: faust.App, name: str) -> faust.TopicT:
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                     allow_empty=True)


def _headers(message: Any) -> list[tuple[str, bytes | None]]:
    raw = message.headers or []
    return list(raw.items()) if isinstance(raw, dict) else list(raw)


def _header(message: Any, name: Header) -> bytes | None:
    return dict(_headers(message)).get(name.value)


def add_idempotent_consumer(app: faust.App, spec: ConsumerSpec, *, inbox_name: str = "inbox") -> list:
    partitions = app.conf.topic_partitions
    source = _raw_topic(app, spec.topic)
    stages = {n: _raw_topic(app, retry_topic(spec.topic, n)) for n in range(1, len(spec.policy.delays_s) + 1)}
    dead = _raw_topic(app, dlq_topic(spec.topic))
    window_ms = int(spec.inbox_window_s * 1000)
    inbox = Inbox(app.Table(inbox_name, default=None, partitions=partitions, key_type=str, value_type=float,
                            extra_topic_configs={"cleanup.policy": "compact,delete", "retention.ms": window_ms,
                                                 # retention drops whole segments: roll them often enough
                                                 "segment.ms": max(60_000, window_ms // 7)}),
                  window_s=spec.inbox_window_s)
    parking = Parking(_ParkedTable(app.Table(f"{inbox_name}-parked", default=None, partitions=partitions,
                                             key_type=str)))
    m = spec.metrics
    # per-record metric children, looked up once (labels() per call is a dict lookup + lock)
    handled, duplicates = m.handled.labels(spec.topic), m.duplicates.labels(spec.topic)
    latency, breaker_gauge = m.handler_latency.labels(spec.topic), m.breaker_state.labels(spec.topic)

    async def to_dlq(message: Any, reason: str, exc: BaseException, attempts: int, first: datetime | None) -> None:
        headers = dead_letter_headers(_strip_retry(_headers(message)), topic=spec.topic,
                                      partition=message.partition, offset=message.offset, error=exc,
                                      attempts=attempts, first_failure_at=first)
        # wait for the broker's ack: the source offset may be acked right after this returns
        await (await dead.send(key=message.key, value=message.value, headers=headers))
        m.dead_lettered.labels(spec.topic, reason).inc()
        log.error("dead-lettered %s/%s@%s after %d attempt(s): %s: %s", message.topic, message.partition,
                  message.offset, attempts, type(exc).__name__, exc)

    async def forward(message: Any, stage: int, role: bytes, attempt: int, delay_s: float, first: datetime,
                      seq: int = 0, requeues: int = 0) -> None:
        headers = _strip_retry(_headers(message)) + [
            (Header.RETRY_ROLE.value, role), (Header.RETRY_ATTEMPT.value, str(attempt).encode()),
            (Header.RETRY_DUE_AT.value, f"{time.time() + delay_s:.3f}".encode()),
            (Header.RETRY_FIRST_FAILURE_AT.value, first.isoformat().encode())]
        if seq:
            headers += [(Header.RETRY_SEQ.value, str(seq).encode()),
                        (Header.RETRY_REQUEUES.value, str(requeues).encode())]
        # acked; the ignore: faust types header values as bytes, but Kafka (and aiokafka) carry null ones too
        await (await stages[stage].send(key=message.key, value=message.value,
                                        headers=headers))  # type: ignore[arg-type]

    async def attempt(message: Any, key: str | None, number: int, first: datetime | None) -> bool:
        """One handling attempt; True when finished (handled, duplicate, dead), False when parked."""
        try:
            event = decode(key=message.key, value=message.value, headers=message.headers, topic=spec.topic,
                           partition=message.partition, offset=message.offset, schemas=spec.schemas,
                           timestamp_ms=int(message.timestamp * 1000) if message.timestamp else None)
        except DecodeError as exc:
            await to_dlq(message, "decode", exc, number, first)
            return True
        if inbox.seen(event.id):
            duplicates.inc()
            return True
        if spec.event_types is not None and event.type not in spec.event_types:
            m.ignored.labels(spec.topic).inc()  # another consumer's business: acked, not handled
            return True
        started = time.perf_counter()
        try:
            result = spec.handler(event, spec.context)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:  # noqa: BLE001 - every failure is routed, none escapes
            step = spec.policy.next_step(number, exc)
            breaker.record_failure(step.verdict == Verdict.RETRY)
            m.handler_errors.labels(spec.topic, str(step.verdict == Verdict.RETRY).lower()).inc()
            first = first or datetime.now(timezone.utc)
            if step.verdict == Verdict.DEAD_LETTER or key is None:
                await to_dlq(message, "handler", exc, number, first)
                return True
            log.warning("attempt %d of %s failed (%s: %s); retry stage %d in %.1fs",
                        number, event.id, type(exc).__name__, exc, step.stage, step.delay_s)
            assert step.stage is not None, step  # a RETRY step names its stage
            parking.park_head(key, event.id, step.stage)
            await forward(message, step.stage, HEAD, number + 1, step.delay_s, first)
            m.retries.labels(spec.topic, str(step.stage)).inc()
            return False
        latency.observe(time.perf_counter() - started)
        breaker.record_success()
        now = time.time()
        inbox.record(event.id, now, message.partition)
        inbox.expire(message.partition, now)  # here the current event is of this partition
        if result is DUPLICATE:  # the handler's own (Postgres) inbox had it: a copy past ours
            duplicates.inc()
        else:
            handled.inc()
        return True

    async def on_source(message: Any) -> None:
        key = message.key.decode("utf-8", "replace") if message.key is not None else None
        if key is not None and parking.route(key) == Route.PARK:
            if parking.is_head(key, _event_id(message)):  # parked, then the worker died before its
                state = parking.state(key)                # copy reached the stage: send it again
                assert state is not None  # is_head: parked
                await forward(message, state.stage, HEAD, 2, 0.0, datetime.now(timezone.utc))
                return
            stage = parking.add_behind(key)
            behind = parking.state(key)
            assert behind is not None  # add_behind: parked
            await forward(message, stage, BEHIND, 1, 0.0, datetime.now(timezone.utc), seq=behind.tail)
        else:
            await attempt(message, key, 1, None)

    async def on_stage(message: Any) -> None:
        key = message.key.decode("utf-8", "replace") if message.key is not None else None
        role = _header(message, Header.RETRY_ROLE)
        number = int(_header(message, Header.RETRY_ATTEMPT) or b"1")
        first = _first_failure(message)
        if key is None:
            await attempt(message, None, number, first)
        elif role == HEAD:
            event_id = _event_id(message)
            was_head = parking.is_head(key, event_id)
            if await attempt(message, key, number, first) and was_head:
                parking.head_done(key)
        else:
            here = stage_of[message.topic]
            seq = int(_header(message, Header.RETRY_SEQ) or b"0")
            requeues = int(_header(message, Header.RETRY_REQUEUES) or b"0")
            now = first or datetime.now(timezone.utc)
            pending = parking.state(key) if parking.head_pending(key) else None
            if pending is not None and pending.stage != here:
                # its head moved on to a later stage: follow it
                await forward(message, pending.stage, BEHIND, 1, 0.0, now, seq=seq, requeues=requeues)
                return
            waiting = parking.head_pending(key) or not parking.turn(key, seq)
            if waiting and requeues < MAX_REQUEUES:
                # its head (a behind record that failed and now leads) or an earlier parked record
                # is still queued in this or an earlier stage: wait at the end of this stage
                await forward(message, here, BEHIND, 1, REQUEUE_S, now, seq=seq, requeues=requeues + 1)
                return
            if waiting:
                log.error("%s: key %s record %d waited %d times for its head or an earlier record; "
                          "taking them as lost (a worker died mid-retry) and handling it", message.topic, key,
                          seq, requeues)
                parking.head_done(key)
            was_parked = parking.state(key) is not None
            await attempt(message, key, 1, None)  # K stays parked meanwhile: later events queue behind
            if was_parked:
                parking.behind_done(key, seq)

    stage_of = {t.get_topic_name(): n for n, t in stages.items()}
    guard = ContinuityGuard(GapReader(_bootstrap(app), app.conf.id), [spec.topic, *stage_of], m)
    guard.attach(app)

    # faust types receivers as taking any positional arguments; this signal always sends `revoked`
    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_revoked(_sender: Any, revoked: Any, **_kw: Any) -> None:
        inbox.forget({tp.partition for tp in revoked if tp.topic == spec.topic})

    delivered = Delivered({spec.topic, *stage_of})
    app.sensors.add(delivered)
    gauges = Gauges(app, m, parking, guard.continuity, spec.topic, delivered=delivered)
    app.timer(1.0, name=f"gauges-{spec.topic}")(gauges.refresh)
    breaker = CircuitBreaker(failure_threshold=spec.breaker_failures, open_for_s=spec.breaker_open_s)

    async def gate() -> None:
        """While the circuit is open nothing is taken (Faust stops fetching once its buffer is
        full): records wait in Kafka instead of burning retry attempts; then one probe."""
        waited = False
        while not breaker.allow():
            if not waited and breaker.state is BreakerState.OPEN:
                log.warning("%s: circuit open after repeated retriable handler failures; taking no records "
                            "for %.1f s, then one probe", spec.topic, breaker.retry_after_s())
            waited = True
            breaker_gauge.set(BREAKER_GAUGE[breaker.state])
            await asyncio.sleep(min(max(breaker.retry_after_s(), 0.05), 1.0))
        breaker_gauge.set(BREAKER_GAUGE[breaker.state])

    waits = Waits(app)

    async def admitted(message: Any) -> bool:
        """The circuit admits ``message`` (at once when closed); False: its partition was revoked
        while the circuit was open, drop it (relay.consume._faust.waits)."""
        if breaker.state is BreakerState.CLOSED:
            await gate()
            return True
        if await waits.away(message, gate):
            return True
        breaker.record_no_verdict()  # it may have been admitted as the probe
        return False

    def agent_loop(process: Callable[[Any], Awaitable[None]], *, retry_stage: bool = False) -> Callable:
        async def settled(message: Any) -> None:
            """``process``, and whatever escapes it (a bug, not input) still ends the record: as a
            dead letter, or, when even that fails, by crashing the worker (it then restarts from
            the committed offset) rather than leaving the partition stuck."""
            try:
                await process(message)
            except Exception as exc:  # noqa: BLE001
                log.exception("unrouted failure on %s[%s]@%s", message.topic, message.partition, message.offset)
                try:
                    await to_dlq(message, "internal", exc, int(_header(message, Header.RETRY_ATTEMPT) or b"1"), None)
                except Exception as again:  # noqa: BLE001
                    await app.crash(again)
                    raise
            finally:
                breaker.record_no_verdict()  # no-op unless a probe ended without calling the handler

        async def due(message: Any) -> bool:
            """Retry stages: wait until the record is due (stage FIFO: due times never decrease)
            before taking it, so no lane sleeps holding a probe or an in-flight slot. Shutdown and
            rebalances do not wait for it (relay.consume._faust.waits): False when its partition was
            revoked meanwhile (drop it: the next owner reads it again)."""
            if not retry_stage:
                return True
            # heads wait for their delay, requeued behind records for their turn
            wait = float(_header(message, Header.RETRY_DUE_AT) or b"0") - time.time()
            return wait <= 0 or await waits.away(message, lambda: asyncio.sleep(wait))

        async def handle_missed(records: list) -> bool:
            """The records of a hole, in order; False when their partition was revoked meanwhile."""
            for record in records:
                if not await due(record):
                    return False
                await settled(record)
            return True

        async def consume(stream: faust.StreamT) -> None:
            lanes = Lanes(spec.concurrency, spec.max_in_flight, settled, bind=_bind_event)
            try:
                # StreamT (faust's interface type) lacks noack(); the Stream it is has it
                async for ev in stream.noack().events():  # type: ignore[attr-defined]  # acked by the lanes, in order
                    message = ev.message
                    missed = await guard.missed(message)
                    if missed:  # what Faust skipped comes first, after what is in flight
                        await lanes.drain(message.topic, message.partition)
                        if not await handle_missed(missed):
                            continue
                    if not await due(message):
                        continue
                    await lanes.wait_room(message.topic, message.partition)
                    if not await admitted(message):  # after the wait: the breaker may have opened meanwhile
                        continue
                    await lanes.submit(ev)
                    guard.done(message)
            finally:
                await lanes.stop()
        return consume

    agents = [app.agent(source, name=f"consume-{spec.topic}", concurrency=1)(agent_loop(on_source))]
    for n, stage in stages.items():
        agents.append(app.agent(stage, name=f"retry-{n}-{spec.topic}", concurrency=1)(
            agent_loop(on_stage, retry_stage=True)))
    app.relay_topics = getattr(app, "relay_topics", []) + spec.topics()  # type: ignore[attr-defined]
    if isinstance(spec.handler, PgIdempotent):  # `relay worker` checks it answers before starting
        needs_database(app, spec.handler.dsn_of(spec.context))
    return agents


def _bind_event(event: Any) -> None:
    """Make ``event`` Faust's current event in this task, as stream iteration does (private API:
    faust.streams._current_event; table writes use it to pick the changelog partition)."""
    from faust.streams import _current_event

    _current_event.set(weakref.ref(event))


def _bootstrap(app: faust.App) -> str:
    return ",".join(f"{url.host}:{url.port}" for url in app.conf.broker)


def _strip_retry(headers: list[tuple[str, bytes | None]]) -> list[tuple[str, bytes | None]]:
    return [(k, v) for k, v in headers if not k.startswith("retry.")]


def _event_id(message: Any) -> str:
    return (_header(message, Header.ID) or b"").decode("utf-8", "replace")


def _first_failure(message: Any) -> datetime | None:
    raw = _header(message, Header.RETRY_FIRST_FAILURE_AT)
    return datetime.fromisoformat(raw.decode()) if raw else None
