"""``relay.testing.Harness``: run a :class:`relay.Consumer` in memory, for unit tests.

    async with Harness(consumer) as t:
        await t.deliver("order", key="o-1", type="OrderPlaced", payload={"total": 5})
        await t.advance(10)                     # fake clock: due retries run
        assert [e.key for e in t.handled] == ["o-1"]
        assert t.dead_letters == []

The harness runs the worker's own pipeline (relay.consume.pipeline: decode, inbox, type filter,
retry ladder, per-key parking, circuit breaker, dead letters) over in-memory topics and a fake
clock; only Kafka and Faust are replaced. What it shows about routing holds in a worker; kills,
rebalances and the broker's behaviour are for tests against a real stack.

- ``deliver`` publishes one event to the subscription's topic (or raw bytes: ``value=``, for poison)
  and runs everything that is due; ``redeliver`` sends a copy of an earlier record (a duplicate);
  ``deliver(..., run=False)`` then ``run()``: the events wait together, as a batch handler
  (``subscribe(batch=N)``) would get them.
- ``advance(seconds)`` moves the clock; retries become due in order, an open circuit closes.
- ``handled`` (events whose handler returned, in order), ``attempts`` (every call), ``retried``
  (event id, stage), ``dead_letters`` (with reason and error), ``ignored`` by type filter.
- ``inbox="postgres"`` handlers get a :class:`FakeTx`: ``statements`` and ``published``
  (``tx.outbox.write`` calls) keep what committed; a handler that raises leaves nothing there.
Startup hooks run on enter and shutdown hooks on exit, with ``ctx.pool`` = the ``pool`` given.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from relay.consume.batch import CURRENT, Batch
from relay.consume.consumer import Consumer, InboxKind, Subscription
from relay.consume.group_commit import settle_all
from relay.consume.pipeline import Headers, Invoke, OpenBatch, Pipeline
from relay.consume.runtime import Runtime
from relay.handling.breaker import CircuitBreaker
from relay.handling.event import Event
from relay.handling.idempotency import Inbox
from relay.handling.parking import Parking
from relay.handling.retry import RetryPolicy
from relay.headers import Header, event_topic

START = 1_800_000_000.0  # the fake clock's epoch seconds at start


@dataclass
class Message:
    """A record on an in-memory topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp: float | None

    def header(self, name: str) -> str | None:
        raw = dict(self.headers).get(name)
        return raw.decode("utf-8", "replace") if raw is not None else None


@dataclass(frozen=True)
class DeadLetter:
    event_id: str | None
    key: str | None
    reason: str  # decode | handler | rejected | exhausted | internal
    error: str  # "<exception class>: <message>"
    attempts: int
    message: Message


class FakeOutbox:
    def __init__(self, tx: "FakeTx") -> None:
        self.tx = tx

    async def write(self, **event: Any) -> str:
        """Record the event (committed with the handler's transaction); a fresh id."""
        self.tx.pending_published.append(event)
        return str(uuid.uuid4())


@dataclass
class FakeTx:
    """What an ``inbox="postgres"`` handler gets in the harness: records, never connects."""

    consumer: str
    attempt: int
    state: dict[str, Any]
    pending_statements: list[tuple[str, Any]] = field(default_factory=list)
    pending_published: list[dict[str, Any]] = field(default_factory=list)
    conn: Any = None

    def __post_init__(self) -> None:
        self.outbox = FakeOutbox(self)

    async def execute(self, query: Any, params: Any = None) -> None:
        self.pending_statements.append((str(query), params))

    async def send(self, query: Any, params: Any = None) -> None:
        """As :meth:`execute` (``Tx.send``: a statement whose result the handler does not need)."""
        self.pending_statements.append((str(query), params))


def _same(message: Message) -> Message:
    return message


def _unbound(_message: Message) -> None:
    """The harness's tables are plain dicts: no partition to bind."""


class _Port:
    def __init__(self, harness: "Harness") -> None:
        self.h = harness

    async def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        self.h._append(topic, key, value, headers)

    async def crash(self, exc: BaseException) -> None:
        raise exc


class Harness:
    """See the module. ``settings``: default ``load_settings()`` (RELAY_* variables apply)."""

    def __init__(self, consumer: Consumer, *, settings: Any = None, pool: Any = None) -> None:
        from relay.config import load_settings
        from relay.metrics import ConsumerMetrics

        self.consumer, self.now = consumer, START
        self.settings = settings if settings is not None else load_settings()
        self.runtime = Runtime(consumer, self.settings, pool=pool, open_pool=False)
        self.topics: dict[str, list[Message]] = defaultdict(list)
        self._cursor: dict[str, int] = defaultdict(int)  # next offset to consume per topic
        self.handled: list[Event] = []
        self.attempts: list[Event] = []
        self.statements: list[tuple[str, Any]] = []
        self.published: list[dict[str, Any]] = []
        self._claims: set[str] = set()
        self.registry = _registry()
        self.metrics = ConsumerMetrics.create(registry=self.registry)
        self.pipelines = {sub.topic: self._pipeline(sub) for sub in consumer.subscriptions}
        self._batches = {sub.topic: (sub.batch, self._batch_opener(sub)) for sub in consumer.subscriptions
                         if sub.batch is not None}
        self._stage_of = {stage: p for p in self.pipelines.values() for stage in p.stages.values()}

    def _pipeline(self, sub: Subscription) -> Pipeline:
        opts = sub.options.resolve(self.settings)
        clock = self.clock
        return Pipeline(topic=sub.topic, invoke=self._invoker(sub), inbox=Inbox({}, opts.dedup_window_s),
                        parking=Parking({}), policy=RetryPolicy(opts.retry_delays),
                        breaker=CircuitBreaker(failure_threshold=opts.breaker_failures,
                                               open_for_s=opts.breaker_open_s, clock=clock),
                        metrics=self.metrics, port=_Port(self), types=sub.types, clock=clock)

    def clock(self) -> float:
        return self.now

    def _invoker(self, sub: Subscription) -> Invoke:
        if sub.inbox is InboxKind.POSTGRES:
            async def invoke_pg(event: Event, attempt: int) -> bool:
                batch = CURRENT.get()
                if sub.batch is not None and batch is not None:  # claimed in the batch, handled as it ends
                    fresh = event.id not in self._claims and batch.collect(event)
                    return fresh
                self.attempts.append(event)
                if event.id in self._claims:
                    return False
                await self._run_pg(sub, [event] if sub.batch is not None else event, attempt)
                return True
            return invoke_pg
        inner = self.runtime.invoker(sub)

        async def invoke(event: Event, attempt: int) -> bool:
            if sub.batch is not None and CURRENT.get() is not None:
                return await inner(event, attempt)  # collected; the batch opener keeps the books
            self.attempts.append(event)
            fresh = await inner(event, attempt)
            self.handled.append(event)
            return fresh
        return invoke

    async def _run_pg(self, sub: Subscription, arg: Any, attempt: int) -> None:
        """A postgres-inbox handler's call; what its FakeTx recorded commits only if it returns."""
        tx = FakeTx(self.consumer.name, attempt, self.runtime.state)
        await sub.handler(arg, tx)  # raises: nothing of tx commits
        events = arg if isinstance(arg, list) else [arg]
        self._claims.update(e.id for e in events)
        self.statements += tx.pending_statements
        self.published += tx.pending_published
        self.handled += events

    def _batch_opener(self, sub: Subscription) -> OpenBatch:
        """The runtime's batch of a batch handler, with the harness's books around its call."""
        if sub.inbox is InboxKind.POSTGRES:
            @asynccontextmanager
            async def pg_opener() -> AsyncIterator[Batch]:
                batch = Batch(conn=None, calls_handler=True)
                yield batch
                if batch.collected:
                    self.attempts += batch.collected
                    await batch.call(self._run_pg(sub, list(batch.collected), 1))
            return pg_opener
        base = self.runtime.batch_opener(sub)
        assert base is not None  # a batch handler always has one

        @asynccontextmanager
        async def opener() -> AsyncIterator[Batch]:
            async with base() as batch:
                yield batch
                self.attempts += batch.collected  # the handler is called as the batch ends
            self.handled += batch.collected  # it returned
        return opener

    async def __aenter__(self) -> "Harness":
        await self.runtime.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runtime.stop()

    # --- driving ------------------------------------------------------------------------------
    async def deliver(self, aggregatetype: str | None = None, *, topic: str | None = None, key: str | None,
                      payload: Any = None, type: str | None = None, id: str | None = None,
                      value: bytes | None = None, headers: dict[str, bytes] | None = None,
                      run: bool = True) -> Message:
        """Publish one event (as Debezium's EventRouter would) to ``outbox.event.<aggregatetype>``
        or ``topic``, then run what is due. ``value`` replaces the JSON payload (poison).
        ``run=False`` only publishes: several events then reach a batch handler together at the
        next :meth:`run`."""
        name = topic or event_topic(aggregatetype or "")
        if name not in self.pipelines:
            raise KeyError(f"topic {name!r}: no subscription of {self.consumer!r}")
        hdrs: Headers = [(Header.ID.value, (id or str(uuid.uuid4())).encode())]
        if type is not None:
            hdrs.append((Header.TYPE.value, type.encode()))
        hdrs += list((headers or {}).items())
        raw = value if value is not None else json.dumps(payload).encode()
        message = self._append(name, key.encode() if key is not None else None, raw, hdrs)
        if run:
            await self.run()
        return message

    async def redeliver(self, message: Message) -> Message:
        """A copy of ``message`` on its topic (what a redelivery after a crash looks like)."""
        copy = self._append(message.topic, message.key, message.value, list(message.headers))
        await self.run()
        return copy

    async def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` ahead, running every record when it becomes due."""
        target = self.now + seconds
        while True:
            await self.run()
            due = self._next_due()
            if due is None or due > target:
                break
            self.now = max(self.now, due)
        self.now = target
        await self.run()

    async def run(self) -> None:
        """Consume every record that is due now (sources first, then the stages), in order."""
        progressed = True
        while progressed:
            progressed = False
            for name in list(self.topics):
                while self._cursor[name] < len(self.topics[name]):
                    message = self.topics[name][self._cursor[name]]
                    pipeline = self.pipelines.get(name) or self._stage_of.get(name)
                    if pipeline is None:  # a dead-letter topic: nobody consumes it here
                        self._cursor[name] = len(self.topics[name])
                        break
                    if name in self._stage_of and float(message.header(Header.RETRY_DUE_AT.value) or 0) > self.now:
                        break  # a stage is FIFO: later records wait for this one
                    if not pipeline.breaker.allow():
                        break  # circuit open: the record waits in its topic
                    if name in self._batches:  # a batch handler takes what waits, up to its batch
                        size, opener = self._batches[name]
                        taken = self.topics[name][self._cursor[name]:self._cursor[name] + size]
                        self._cursor[name] += len(taken)
                        await settle_all(pipeline, taken, _same, _unbound, opener)
                    else:
                        self._cursor[name] += 1
                        await pipeline.settled(message)
                    progressed = True

    def _next_due(self) -> float | None:
        dues = [float(self.topics[n][self._cursor[n]].header(Header.RETRY_DUE_AT.value) or 0)
                for n in self._stage_of if self._cursor[n] < len(self.topics[n])]
        opens = [self.now + p.breaker.retry_after_s() for p in self.pipelines.values()
                 if p.breaker.retry_after_s() > 0]
        return min(dues + opens) if dues or opens else None

    def _append(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> Message:
        log = self.topics[topic]
        message = Message(topic, 0, len(log), key, value, headers, self.now)
        log.append(message)
        return message

    # --- what happened ------------------------------------------------------------------------
    @property
    def dead_letters(self) -> list[DeadLetter]:
        out = []
        for name, log in self.topics.items():
            if not name.endswith(".dlq"):
                continue
            for m in log:
                out.append(DeadLetter(m.header(Header.ID.value), m.key.decode() if m.key is not None else None,
                                      m.header(Header.DLQ_REASON.value) or "?",
                                      f"{m.header(Header.DLQ_ERROR_CLASS.value)}: "
                                      f"{m.header(Header.DLQ_ERROR_MESSAGE.value)}",
                                      int(m.header(Header.DLQ_ATTEMPTS.value) or 0), m))
        return out

    @property
    def retried(self) -> list[tuple[str | None, int]]:
        """(event id, stage) of every record sent to a retry stage as a head (a failure)."""
        return [(m.header(Header.ID.value), self._stage_of[name].stage_of[name])
                for name in self._stage_of for m in self.topics[name]
                if m.header(Header.RETRY_ROLE.value) == "head"]

    @property
    def ignored(self) -> int:
        """Events acknowledged without a handler call because of a subscription's ``types``."""
        return int(sum(self.registry.get_sample_value("relay_events_ignored_total", {"topic": t}) or 0
                       for t in self.pipelines))


def _registry() -> Any:
    from prometheus_client import CollectorRegistry

    return CollectorRegistry()


__all__ = ["Harness", "Message", "DeadLetter", "FakeTx"]
