"""The Faust adapter of one subscription: Faust tables for the inbox and parking, raw topics as
the pipeline's port, and one agent per source topic and retry stage. What a record becomes is
decided by relay.consume.pipeline (and relay.consume.routing); here is only what Faust needs.

Each agent runs Faust concurrency 1 and hands records to ``concurrency`` lanes by key
(lanes: per-key order, bounded in flight per partition, acks in offset order; Faust's own
concurrency commits past in-flight events, faust-streaming#606). A circuit breaker over the
handler stops taking records after ``breaker_failures`` consecutive retriable failures, then
probes with one record (relay.handling.breaker).

Nothing skipped: Faust can hand over a partition with a hole after an assignment (a prefetch
that lands after the seek to committed; relay.handling.continuity). Each agent compares every
record's offset with the committed offset at assignment / the last one handled and first handles
the records of a hole, read independently (guard); a one-offset hole mid-stream is a transaction
marker and is not read. Stage topics must have the source's partition count (``relay worker``
creates them) so that a key lands on the same partition number and the parking table sees it;
Faust assigns co-partitioned topics together.

Nothing stalled: faust-streaming drops the rest of a fetched batch when the consumer generation
changes while it hands the batch over (Consumer.getmany), after aiokafka's position moved past
it; with no later record to reveal the hole, the partition was never consumed (2 workers started
together: about half the runs). A 1 s watchdog seeks such a partition back to the next expected
offset (relay_partitions_unstalled_total).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict
from typing import Any, Awaitable, Callable, Iterator, MutableMapping

import faust

from relay.consume._faust import compat
from relay.consume._faust.compat import bind_event
from relay.consume._faust.gapfill import GapReader
from relay.consume._faust.gauges import Delivered, Gauges
from relay.consume._faust.guard import ContinuityGuard
from relay.consume._faust.waits import Waits
from relay.consume.consumer import Resolved, Subscription
from relay.consume.group_commit import settle_all
from relay.consume.lanes import Lanes
from relay.consume.pipeline import Headers, Invoke, OpenBatch, Pipeline, header_list
from relay.handling.breaker import BreakerState, CircuitBreaker
from relay.handling.idempotency import Inbox
from relay.handling.parking import ParkedKey, Parking
from relay.handling.retry import RetryPolicy
from relay.headers import Header
from relay.metrics import ConsumerMetrics

log = logging.getLogger("relay.consumer")
BREAKER_GAUGE = {BreakerState.CLOSED: 0, BreakerState.OPEN: 1, BreakerState.HALF_OPEN: 2}
UNSTALL_S = 5.0  # an idle source partition with fetched, undelivered records waits this long for a seek


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


class FaustPort:
    """The pipeline's port on Faust: sends to raw topics, acked; crash stops the worker."""

    def __init__(self, app: faust.App, topics: list[str]) -> None:
        self.app = app
        self.topics = {name: _raw_topic(app, name) for name in topics}

    async def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        # acked; the ignore: faust types header values as bytes, but Kafka (and aiokafka) carry null ones too
        await (await self.topics[topic].send(key=key, value=value, headers=headers))  # type: ignore[arg-type]

    async def crash(self, exc: BaseException) -> None:
        await self.app.crash(exc)


class FaustSubscription:
    """One subscription attached to a Faust app: its tables, pipeline, guard, gauges and agents."""

    def __init__(self, app: faust.App, sub: Subscription, opts: Resolved, invoke: Invoke,
                 metrics: ConsumerMetrics, schemas: Any = None, open_batch: OpenBatch | None = None) -> None:
        self.app, self.sub, self.opts, self.open_batch = app, sub, opts, open_batch
        partitions = app.conf.topic_partitions
        window_ms = int(opts.dedup_window_s * 1000)
        inbox = Inbox(app.Table(f"inbox-{sub.name}", default=None, partitions=partitions, key_type=str,
                                value_type=float,
                                extra_topic_configs={"cleanup.policy": "compact,delete", "retention.ms": window_ms,
                                                     # retention drops whole segments: roll them often enough
                                                     "segment.ms": max(60_000, window_ms // 7)}),
                      window_s=opts.dedup_window_s)
        self.parking = Parking(_ParkedTable(app.Table(f"parked-{sub.name}", default=None, partitions=partitions,
                                                      key_type=str)))
        self.breaker = CircuitBreaker(failure_threshold=opts.breaker_failures, open_for_s=opts.breaker_open_s)
        policy = RetryPolicy(opts.retry_delays)
        self.port = FaustPort(app, [])
        self.pipeline = Pipeline(topic=sub.topic, invoke=invoke, inbox=inbox, parking=self.parking, policy=policy,
                                 breaker=self.breaker, metrics=metrics, port=self.port, types=sub.types,
                                 schemas=schemas)
        self.port.topics = {name: _raw_topic(app, name) for name in self.pipeline.topics()}
        self.metrics, self.inbox = metrics, inbox
        self.breaker_gauge = metrics.breaker_state.labels(sub.topic)
        self.waits = Waits(app)
        self.guard = ContinuityGuard(GapReader(_bootstrap(app), app.conf.id,
                                               security=getattr(app, "relay_client_security", None)),
                                     [sub.topic, *self.pipeline.stage_of], metrics)
        self._busy = False  # the source agent holds a record it has not submitted yet
        self._lanes: Lanes | None = None  # the source agent's lanes
        self._idle: dict[tuple[str, int], tuple[int, float]] = {}  # tp -> (expected offset, idle since)

    def attach(self) -> list[Any]:
        """Register tables' revocation, guard, gauges and the agents on the app; the agents."""
        app, topic = self.app, self.sub.topic
        self.guard.attach(app)

        # faust types receivers as taking any positional arguments; this signal always sends `revoked`
        @app.on_partitions_revoked.connect  # type: ignore[arg-type]
        async def forget_revoked(_sender: Any, revoked: Any, **_kw: Any) -> None:
            self.inbox.forget({tp.partition for tp in revoked if tp.topic == topic})

        delivered = Delivered({topic, *self.pipeline.stage_of})
        app.sensors.add(delivered)
        gauges = Gauges(app, self.metrics, self.parking, self.guard.continuity, topic, delivered=delivered)
        app.timer(1.0, name=f"gauges-{topic}")(gauges.refresh)
        app.timer(1.0, name=f"unstall-{topic}")(self._unstall)
        agents = [app.agent(self.port.topics[topic], name=f"consume-{topic}", concurrency=1)(self._loop(False))]
        for n, stage in self.pipeline.stages.items():
            agents.append(app.agent(self.port.topics[stage], name=f"retry-{n}-{topic}", concurrency=1)(
                self._loop(True)))
        return agents

    async def _unstall(self) -> None:
        """Resume a source partition Faust fetched past but never handed over (see the module
        doc): the agent idle, nothing of it in flight, records past the next expected offset
        fetched, for ``UNSTALL_S``: seek it back to that offset. Never raises (a timer's
        exception crashes the worker)."""
        try:
            consumer, now = self.app.consumer, time.monotonic()
            if self._busy or self.app.rebalancing or self.breaker.state is not BreakerState.CLOSED:
                self._idle.clear()
                return
            for tp in consumer.assignment():
                if tp.topic != self.sub.topic:
                    continue
                key = (tp.topic, tp.partition)
                expected, high = self.guard.continuity.next_offset(key), consumer.highwater(tp)
                position = compat.fetch_position(consumer, tp)
                held = self._lanes is not None and self._lanes.pending(tp.topic, tp.partition)
                if (expected is None or high is None or position is None or held
                        or high - expected <= 1 or position <= expected):
                    self._idle.pop(key, None)
                    continue
                since = self._idle.setdefault(key, (expected, now))
                if since[0] != expected:
                    self._idle[key] = (expected, now)
                elif now - since[1] >= UNSTALL_S:
                    log.warning("%s[%d]: records from offset %d on were fetched (position %d) but never handed to "
                                "the agent (faust-streaming drops a fetch that spans a rebalance); seeking back to "
                                "%d", tp.topic, tp.partition, expected, position, expected)
                    self._idle.pop(key, None)
                    self.metrics.unstalled.labels(tp.topic).inc()
                    await consumer.seek(tp, expected)
        except Exception as exc:  # noqa: BLE001 - a watchdog is not worth a crash
            log.debug("unstall check skipped: %s", exc)

    async def _gate(self) -> None:
        """While the circuit is open nothing is taken (Faust stops fetching once its buffer is
        full): records wait in Kafka instead of burning retry attempts; then one probe."""
        breaker, waited = self.breaker, False
        while not breaker.allow():
            if not waited and breaker.state is BreakerState.OPEN:
                log.warning("%s: circuit open after repeated retriable handler failures; taking no records "
                            "for %.1f s, then one probe", self.sub.topic, breaker.retry_after_s())
            waited = True
            self.breaker_gauge.set(BREAKER_GAUGE[breaker.state])
            await asyncio.sleep(min(max(breaker.retry_after_s(), 0.05), 1.0))
        self.breaker_gauge.set(BREAKER_GAUGE[breaker.state])

    async def _admitted(self, message: Any) -> bool:
        """The circuit admits ``message`` (at once when closed); False: its partition was revoked
        while the circuit was open, drop it (waits)."""
        if self.breaker.state is BreakerState.CLOSED:
            await self._gate()
            return True
        if await self.waits.away(message, self._gate):
            return True
        self.breaker.record_no_verdict()  # it may have been admitted as the probe
        return False

    async def _due(self, message: Any, retry_stage: bool) -> bool:
        """Retry stages: wait until the record is due (stage FIFO: due times never decrease)
        before taking it, so no lane sleeps holding a probe or an in-flight slot. Shutdown and
        rebalances do not wait for it (waits): False when its partition was revoked meanwhile
        (drop it: the next owner reads it again)."""
        if not retry_stage:
            return True
        raw = dict(header_list(message)).get(Header.RETRY_DUE_AT.value)
        wait = float(raw or b"0") - time.time()
        return wait <= 0 or await self.waits.away(message, lambda: asyncio.sleep(wait))

    async def _batch(self, events: list[Any]) -> None:
        await settle_all(self.pipeline, events, _message, bind_event, self.open_batch)

    def _loop(self, retry_stage: bool) -> Callable[[faust.StreamT], Awaitable[None]]:
        settled = self.pipeline.settled

        async def handle_missed(records: list[Any]) -> bool:
            """The records of a hole, in order; False when their partition was revoked meanwhile."""
            for record in records:
                if not await self._due(record, retry_stage):
                    return False
                await settled(record)
            return True

        async def take(ev: Any, lanes: Lanes) -> None:
            """Hand one record to the lanes: what Faust skipped first, once due and admitted; a
            record of a partition revoked meanwhile is dropped (the next owner reads it again)."""
            message = ev.message
            missed = await self.guard.missed(message)
            if missed:  # what Faust skipped comes first, after what is in flight
                await lanes.drain(message.topic, message.partition)
                if not await handle_missed(missed):
                    return
            if not await self._due(message, retry_stage):
                return
            await lanes.wait_room(message.topic, message.partition)
            if not await self._admitted(message):  # after the wait: the breaker may have opened meanwhile
                return
            await lanes.submit(ev)
            self.guard.done(message)

        async def consume(stream: faust.StreamT) -> None:
            lanes = Lanes(self.opts.concurrency, self.opts.max_in_flight, settled, bind=bind_event,
                          batch=self.opts.batch_size, process_batch=self._batch)
            if not retry_stage:
                self._lanes = lanes
            try:
                # StreamT (faust's interface type) lacks noack(); the Stream it is has it
                async for ev in stream.noack().events():  # type: ignore[attr-defined]  # acked by the lanes, in order
                    if not retry_stage:
                        self._busy = True  # the watchdog leaves the partitions alone meanwhile
                    try:
                        await take(ev, lanes)
                    finally:
                        self._busy = False
            finally:
                await lanes.stop()
        return consume


def _message(event: Any) -> Any:
    return event.message


def _bootstrap(app: faust.App) -> str:
    return ",".join(f"{url.host}:{url.port}" for url in app.conf.broker)
