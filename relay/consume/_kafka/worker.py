"""A :class:`relay.Consumer` run on confluent-kafka (``RELAY_CONSUMER_ENGINE=kafka``).

Guarantees (the same as the Faust engine's, proven by the same tests):
- at least once: a source offset is committed only when every record before it is finished
  (the lanes ack the finished prefix in order) *and* the changelog records written before that
  ack were acknowledged by the broker (relay.consume._kafka.deliveries), so a crash never loses
  an event and never forgets that one was handled;
- effectively once: the inbox table is restored from its changelog before any record of its
  partition is handled (relay.consume._kafka.restore);
- per-key order: source and retry stages of one subscription are co-partitioned and assigned
  together (the range assignor gives a member partition p of every topic with the same partition
  count), parking works as in relay.consume.routing;
- rebalances: before partitions go, their feeds stop, what is in flight finishes (up to
  ``REVOKE_WAIT_S``), the finished prefix is committed and their table partitions are dropped.

Threads: the event loop runs the pipelines; ``poll``/``consume`` run in a worker thread, where
librdkafka also calls the rebalance callbacks, which hand their work to the loop and wait for it.
Only that thread calls the consumer (relay.consume._kafka.owner: the loop queues its commits,
pauses and resumes); a watchdog thread turns a hang into a stop (relay.consume._kafka.watchdog).
Delivery reports are served by the producer's thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout
from typing import Any

from confluent_kafka import Consumer as KafkaConsumer, KafkaError, KafkaException, TopicPartition

from relay.config import Settings
from relay.consume._kafka import gauges
from relay.consume._kafka.deliveries import Deliveries, Headers
from relay.consume._kafka.feed import Feed, Rec
from relay.consume._kafka.owner import Owner
from relay.consume._kafka.restore import restore
from relay.consume._kafka.subscription import KafkaSubscription
from relay.consume._kafka.watchdog import Watchdog, thread_stacks
from relay.consume.consumer import Consumer
from relay.consume.runtime import Runtime
from relay.errors import ConfigError
from relay.kafka_access import LoginWatch, denied, is_denied
from relay.kafka_logs import kafka_logger
from relay.metrics import ConsumerMetrics
from relay.topics import client_config, producer_config

log = logging.getLogger("relay.consumer")
FETCH_RECORDS = 1000  # records taken from librdkafka's queue at once
POLL_S = 0.1  # a fetch waits this long for a first record, then returns (shutdown checks)
COMMIT_S = 0.5  # how often the finished prefix is committed
GAUGE_S = 1.0  # how often the polling thread refreshes the lag gauges
REVOKE_WAIT_S = 30.0  # records in flight on revoked partitions get this long to finish
STOP_WAIT_S = 10.0  # ... and at shutdown
REBALANCE_WAIT_S = 2 * REVOKE_WAIT_S + 10  # a rebalance callback waits this long for the loop
FETCH_LIMIT_S = 240.0  # a fetch with its rebalance callbacks (restore <= 120 s, revocation <= 70 s)
LOOP_LIMIT_S = 30.0  # the event loop not running for this long is a hang
CLOSE_WAIT_S = 30.0  # closing the consumer (leaving the group) at shutdown
EXIT_GRACE_S = 60.0  # once stuck, stopping gets this long before the process exits with status 1
TP = tuple[str, int]


class _Port:
    """The pipelines' port: acked sends through the worker's producer; crash stops the worker."""

    def __init__(self, worker: "KafkaWorker") -> None:
        self.worker = worker

    async def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        deliveries = self.worker.deliveries
        assert deliveries is not None  # sends happen only while the worker runs
        await deliveries.send(topic, key, value, headers)

    async def crash(self, exc: BaseException) -> None:
        self.worker.fail(exc)


class KafkaWorker:
    def __init__(self, consumer: Consumer, settings: Settings, *, metrics: ConsumerMetrics | None = None) -> None:
        if not consumer.subscriptions:
            raise ConfigError([f"consumer {consumer.name!r}: no subscription; decorate a handler with "
                               "@consumer.subscribe(...)"])
        self.consumer, self.settings = consumer, settings
        self.relay_metrics = self.metrics = metrics or ConsumerMetrics.create()
        self.relay_runtime = self.runtime = Runtime(consumer, settings, registry=self.metrics.registry)
        self.relay_databases = [settings.dsn] if consumer.needs_postgres else []  # checked before start
        port = _Port(self)
        self.subs = [KafkaSubscription(consumer.name, sub, sub.options.resolve(settings), self.runtime.invoker(sub),
                                       self.metrics, port, self._write, open_batch=self.runtime.batch_opener(sub))
                     for sub in consumer.subscriptions]
        self.by_topic = {topic: s for s in self.subs for topic in s.reads()}
        self.changelogs = {t: c for s in self.subs for t, c in s.changelogs().items()}
        self.relay_topics = [t for s in self.subs for t in s.pipeline.topics()] + list(self.changelogs)
        self.deliveries: Deliveries | None = None
        self.kafka: KafkaConsumer | None = None
        self.feeds: dict[TP, Feed] = {}
        self.positions: dict[TP, tuple[int, int]] = {}  # tp -> (next offset to commit, changelog writes before it)
        self.committed: dict[TP, int] = {}
        self.failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._commit_lock: asyncio.Lock | None = None
        self._threads = ThreadPoolExecutor(4, thread_name_prefix="relay-kafka")
        self.owner = Owner(self._threads)  # the loop's calls to the consumer, made by the polling thread
        self._gauged = 0.0
        self._login = LoginWatch()  # the consumer's own, once it exists
        self.watchdog = Watchdog(self._fail_threadsafe, loop_limit_s=LOOP_LIMIT_S, exit_grace_s=EXIT_GRACE_S)
        self._abandoned = False  # a thread is stuck in librdkafka: exit without joining it

    # -- lifecycle ---------------------------------------------------------------------------
    def run(self) -> int:
        """Run until SIGTERM/SIGINT (or a fatal error); the exit code (0, or 1 after a failure)."""
        asyncio.run(self.main())
        code = 1 if self.failure is not None else 0
        if self._abandoned:  # the interpreter would wait for the stuck thread forever
            logging.shutdown()
            os._exit(code)
        return code

    def stop(self) -> None:
        self.metrics.readiness.mark_not_ready("stopping")
        if self._stopping is not None:
            self._stopping.set()

    def fail(self, exc: BaseException) -> None:
        """The worker cannot go on: stop it; nothing after the failure is committed."""
        if self.failure is None:
            log.critical("stopping the worker: %s: %s", type(exc).__name__, exc)
            self.failure = exc
        self.stop()

    async def main(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._stopping, self._commit_lock = asyncio.Event(), asyncio.Lock()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.stop)
            except (NotImplementedError, RuntimeError):  # not the main thread (tests): stop() instead
                pass
        self.deliveries = Deliveries(producer_config(self.settings), loop, self.fail)
        self.deliveries.start()
        self.watchdog.start(loop)
        helpers: list[asyncio.Task[None]] = []
        try:
            await self.runtime.start()
            for s in self.subs:
                s.start(self._on_room)
            config = self._consumer_config()
            self._login = config["error_cb"]
            self.kafka = KafkaConsumer(config)
            self.kafka.subscribe(list(self.by_topic), on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_lost)
            helpers.append(asyncio.create_task(self._commit_loop()))
            self.owner.polling = True
            self.metrics.readiness.mark_ready()  # /readyz: subscribed and polling
            while not self._stopping.is_set():
                self._dispatch(await loop.run_in_executor(self._threads, self._fetch))
        except Exception as exc:  # noqa: BLE001 - said at once, then the ordinary shutdown
            self.fail(exc)
        finally:
            self.owner.polling = False
            await loop.run_in_executor(self._threads, self.owner.serve)  # what the last fetch left
            await self._shutdown(helpers)
            self.watchdog.close()

    def _consumer_config(self) -> dict[str, Any]:
        s = self.settings
        return {**client_config(s), "group.id": self.consumer.name, "enable.auto.commit": False,
                "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
                "isolation.level": "read_committed", "partition.assignment.strategy": "range",
                "max.partition.fetch.bytes": max(1 << 20, s.max_record_bytes),
                "fetch.max.bytes": max(50 << 20, s.max_record_bytes),
                "fetch.wait.max.ms": s.consumer_fetch_wait_ms,
                "session.timeout.ms": s.consumer_session_timeout_ms,
                "heartbeat.interval.ms": max(1000, s.consumer_session_timeout_ms // 4),
                **({"group.instance.id": s.consumer_instance_id} if s.consumer_instance_id else {})}

    async def _shutdown(self, helpers: list[asyncio.Task[None]]) -> None:
        loop = asyncio.get_running_loop()
        tps = list(self.feeds)
        for feed in self.feeds.values():
            feed.close(keep_acks=True)  # what is being handled still counts for the final commit
        try:
            await asyncio.wait_for(self._drop(tps), STOP_WAIT_S)
        except asyncio.TimeoutError:
            log.warning("stopping with records still in flight; they are read again after a restart")
        if self.failure is None and self.kafka is not None:
            try:
                await asyncio.wait_for(self._commit(), STOP_WAIT_S)
            except (KafkaException, asyncio.TimeoutError) as exc:
                log.warning("final commit failed (%r); a restart re-reads from the last commit", exc)
        kafka = self.kafka
        if kafka is not None:
            try:  # revokes: one more (empty) commit
                await asyncio.wait_for(loop.run_in_executor(self._threads, kafka.close), CLOSE_WAIT_S)
            except asyncio.TimeoutError:
                log.warning("closing the consumer did not finish within %.0f s; exiting without it (the group "
                            "drops this member after its session timeout)", CLOSE_WAIT_S)
                self._abandoned = True
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        for s in self.subs:
            await s.stop()
        if self.deliveries is not None:
            await loop.run_in_executor(self._threads, self.deliveries.close)
        await self.runtime.stop()
        self._threads.shutdown(wait=False)

    # -- fetching ----------------------------------------------------------------------------
    def _fetch(self) -> list[Any]:  # a worker thread
        kafka = self.kafka
        assert kafka is not None
        with self.watchdog.watching("the consumer's poll (and the rebalance callbacks it runs)", FETCH_LIMIT_S):
            self.owner.serve()
            if time.monotonic() - self._gauged >= GAUGE_S:
                self._gauged = time.monotonic()
                gauges.refresh(kafka, self.feeds, self.subs, self.metrics)
            first = kafka.poll(POLL_S)
            self._login.check(self.settings)  # a refused login is only said to the error callback
            if first is None:
                return []
            return [first, *kafka.consume(FETCH_RECORDS - 1, 0)]

    def _dispatch(self, messages: list[Any]) -> None:
        runs: dict[TP, list[Any]] = {}
        for msg in messages:
            err = msg.error()
            if err is not None:
                self._fetch_error(err, msg.topic())
                continue
            runs.setdefault((msg.topic(), msg.partition()), []).append(msg)
        for (topic, partition), msgs in runs.items():
            feed = self.feeds.get((topic, partition))
            if feed is not None:  # else revoked meanwhile: its next owner reads them
                ack = feed.acked
                feed.push([Rec(msg, ack, topic, partition) for msg in msgs])

    def _fetch_error(self, err: KafkaError, topic: str | None) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if is_denied(err.code()):  # an ACL is missing: no retry will help
            group = err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED
            self.fail(denied(self.settings, err.code(), self.consumer.name if group else topic,
                             "join" if group else "read", err.str()))
        elif err.fatal():
            self.fail(KafkaException(err))
        else:  # broker down, partition leader moved...: librdkafka retries; rate-limited like its own logs
            kafka_logger().warning("consumer: %s", err.str())

    def _pause(self, topic: str, partition: int, pause: bool) -> None:
        """Asked on the loop, done by the polling thread before its next poll (or before the
        rebalance callback that closed the feed returns)."""
        kafka = self.kafka
        if kafka is not None:
            self.owner.tell(lambda: _pause_resume(kafka, topic, partition, pause))

    def _on_room(self, topic: str, partition: int) -> None:
        feed = self.feeds.get((topic, partition))
        if feed is not None and feed.buffer:
            feed.pump()

    # -- progress ----------------------------------------------------------------------------
    def _write(self, topic: str, partition: int, key: bytes, value: bytes | None) -> None:
        deliveries = self.deliveries
        assert deliveries is not None  # tables are written while the worker runs
        deliveries.write(topic, partition, key, value)

    def _acked(self, record: Rec) -> None:
        deliveries = self.deliveries
        assert deliveries is not None
        self.positions[(record.topic, record.partition)] = (record.offset + 1, deliveries.produced)

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(COMMIT_S)
            if self.failure is not None:  # nothing after a failure is committed
                return
            try:
                await self._commit()
            except KafkaException as exc:
                log.info("commit deferred: %s", exc)

    async def _commit(self, only: set[TP] | None = None) -> None:
        """Commit each partition's finished prefix once its changelog writes are acknowledged."""
        assert self._commit_lock is not None and self.deliveries is not None and self.kafka is not None
        async with self._commit_lock:
            due = {tp: pos for tp, pos in self.positions.items()
                   if (only is None or tp in only) and self.committed.get(tp) != pos[0]}
            if not due:
                return
            await self.deliveries.wait(max(mark for _offset, mark in due.values()))
            offsets = [TopicPartition(t, p, offset) for (t, p), (offset, _mark) in due.items()]
            kafka = self.kafka
            await self.owner.call(lambda: kafka.commit(offsets=offsets, asynchronous=False))
            for tp, (offset, _mark) in due.items():
                self.committed[tp] = offset

    # -- rebalances (called by librdkafka in the fetching thread) ----------------------------
    def _on_assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        wanted: dict[tuple[int, int], Any] = {}
        for tp in partitions:
            sub = self.by_topic.get(tp.topic)
            for table in sub.tables() if sub is not None else []:
                wanted[(id(table), tp.partition)] = (table, tp.partition)
        try:
            read = restore(client_config(self.settings), list(wanted.values()), group=self.consumer.name)
            if read:
                log.info("restored %d changelog records for %d table partition(s)", read, len(wanted))
        except Exception as exc:  # noqa: BLE001 - handling without the inbox would repeat handled events
            self._on_loop(self._fail_async(exc))
            return
        self._on_loop(self._assigned([(tp.topic, tp.partition) for tp in partitions]))

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        self._on_loop(self._revoked([(tp.topic, tp.partition) for tp in partitions], commit=True))

    def _on_lost(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        self._on_loop(self._revoked([(tp.topic, tp.partition) for tp in partitions], commit=False))

    def _on_loop(self, coro: Any) -> None:
        """Run ``coro`` on the event loop and wait for it (the fetching thread blocks meanwhile). It
        is bounded by its own waits; should it still hang, the worker stops rather than wedge."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        deadline = time.monotonic() + REBALANCE_WAIT_S
        while True:
            self.owner.serve()  # the coroutine's consumer calls (commit, resume) are ours to make
            try:
                future.result(timeout=0.01)
                self.owner.serve()  # e.g. the resumes of the feeds it closed, before the partitions go
                return
            except FutureTimeout:
                if time.monotonic() < deadline:
                    continue
            log.critical("a rebalance callback did not finish within %.0f s; stopping. Threads:\n%s",
                         REBALANCE_WAIT_S, thread_stacks())
            self._fail_threadsafe(TimeoutError(f"rebalance callback stuck for {REBALANCE_WAIT_S:.0f} s"))
            return

    async def _fail_async(self, exc: BaseException) -> None:
        self.fail(exc)

    def _fail_threadsafe(self, exc: BaseException) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.fail, exc)

    async def _assigned(self, tps: list[TP]) -> None:
        for topic, partition in tps:
            sub = self.by_topic.get(topic)
            if sub is not None:
                self.feeds[(topic, partition)] = sub.assign(topic, partition, self._pause, self._acked)
        log.info("assigned %s", _names(tps))

    async def _revoked(self, tps: list[TP], *, commit: bool) -> None:
        for s in self.subs:
            s.revoke(tps)
        for tp in tps:
            self.feeds.pop(tp, None)
        try:
            await asyncio.wait_for(self._drop(tps), REVOKE_WAIT_S)
        except asyncio.TimeoutError:  # they would write to tables and offsets the next owner has taken over
            self.fail(TimeoutError(f"handlers still running on revoked partitions after {REVOKE_WAIT_S:.0f} s; "
                                   "stopping so that they cannot write after the next owner took over (it reads "
                                   "their records again)"))
        if commit and self.failure is None:
            try:
                await asyncio.wait_for(self._commit(set(tps)), REVOKE_WAIT_S)
            except (KafkaException, asyncio.TimeoutError) as exc:
                log.warning("commit on revocation failed (%r); the next owner re-reads from the last commit", exc)
        for tp in tps:
            self.positions.pop(tp, None)
            self.committed.pop(tp, None)
            try:
                self.metrics.lag.remove(tp[0], str(tp[1]))
            except KeyError:  # never set
                pass
        for s in self.subs:
            held = {p for (t, p) in self.feeds if t in s.reads()}
            s.forget({p for (t, p) in tps if t in s.reads()} - held)
        log.info("revoked %s", _names(tps))

    async def _drop(self, tps: list[TP]) -> None:
        for s in self.subs:
            await s.drop([tp for tp in tps if tp[0] in s.reads()])


def _pause_resume(kafka: KafkaConsumer, topic: str, partition: int, pause: bool) -> None:
    try:
        (kafka.pause if pause else kafka.resume)([TopicPartition(topic, partition)])
    except KafkaException as exc:  # revoked meanwhile
        log.debug("%s %s[%d]: %s", "pause" if pause else "resume", topic, partition, exc)


def _names(tps: list[TP]) -> str:
    """``topic[0,1,2], topic.retry.1[0,1,2]``."""
    by_topic: dict[str, list[int]] = {}
    for t, p in sorted(tps):
        by_topic.setdefault(t, []).append(p)
    return ", ".join(f"{t}[{','.join(map(str, ps))}]" for t, ps in by_topic.items()) or "nothing"
