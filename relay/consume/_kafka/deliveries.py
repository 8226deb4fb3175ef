"""The engine's one idempotent producer: changelog writes tracked by sequence number, and sends
that the caller awaits until acknowledged.

Contract:
- :meth:`Deliveries.write` produces without waiting and returns its sequence number; ``acked``
  is the highest ``n`` such that every write numbered up to ``n`` was acknowledged, so a caller
  that noted ``produced`` before acking a source offset may commit that offset once
  :meth:`Deliveries.reached` says so (the inbox record is then durable before the offset);
- :meth:`Deliveries.send` returns once the broker acknowledged the record, or raises
  :class:`~relay.errors.KafkaUnavailable` with the broker's reason;
- a write that fails after the producer's own retries (idempotent: retried without duplicates or
  reordering) is fatal: ``on_fatal`` is called once and nothing past it is ever committed;
- delivery reports are served by one background thread (``producer.poll``); results reach the
  event loop through ``call_soon_threadsafe``. A write's report is matched to its number by
  partition: the idempotent producer reports a partition's records in the order they were
  produced, so each partition keeps a FIFO of (number, key); a report whose key is not the one
  expected is fatal (it would mean that ordering broke), never a wrong acknowledgement.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from typing import Any, Callable

from confluent_kafka import KafkaError, Producer

from relay.errors import KafkaUnavailable

log = logging.getLogger("relay.consumer")
Headers = list[tuple[str, bytes | None]]


class Deliveries:
    def __init__(self, config: dict[str, Any], loop: asyncio.AbstractEventLoop,
                 on_fatal: Callable[[BaseException], None]) -> None:
        self.producer = Producer(config)
        self.loop, self.on_fatal = loop, on_fatal
        self.produced = 0  # writes numbered 1..produced were produced
        self.acked = 0  # every write numbered 1..acked was acknowledged
        self._done: set[int] = set()  # acknowledged above `acked`
        self._failed: BaseException | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._lock = threading.Lock()
        # writes not yet reported, per (topic, partition), in produce order. One shared callback:
        # a partial per write (librdkafka holds each until its report) cost ~1.5 µs per record
        self._pending: dict[tuple[str, int], deque[tuple[int, bytes]]] = {}
        self._on_written = self._written
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="relay-deliveries", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.05)

    def write(self, topic: str, partition: int, key: bytes, value: bytes | None) -> int:
        """Produce a changelog record; its sequence number."""
        n = self.produced + 1
        pending = self._pending.get((topic, partition))
        if pending is None:
            pending = self._pending[(topic, partition)] = deque()
        pending.append((n, key))  # before produce: its report may come at once, on the other thread
        try:
            self._produce(topic, key=key, value=value, partition=partition, on_delivery=self._on_written)
        except Exception as exc:  # a changelog write that cannot even be queued: nothing may commit past it
            pending.pop()
            self._fail(KafkaUnavailable(f"changelog write to {topic}[{partition}] refused: {exc}"))
            raise
        self.produced = n
        return n

    def _produce(self, topic: str, **kw: Any) -> None:
        while True:
            try:
                self.producer.produce(topic, **kw)
                return
            except BufferError:  # the local queue is full: the delivery thread drains it (only that
                time.sleep(0.005)  # thread serves reports, so a partition's reports stay in order)

    def _written(self, err: KafkaError | None, msg: Any) -> None:  # producer thread
        if err is not None:
            self._fail(KafkaUnavailable(f"changelog write not acknowledged: {err.str()}"))
            return
        topic, partition = msg.topic(), msg.partition()
        pending = self._pending.get((topic, partition))
        n, key = pending.popleft() if pending else (0, None)
        if key != msg.key():
            self._fail(KafkaUnavailable(f"changelog write to {topic}[{partition}]: a delivery report out of produce "
                                        f"order (key {msg.key()!r}, expected {key!r}); nothing past it commits"))
            return
        with self._lock:
            self._done.add(n)
            while self.acked + 1 in self._done:
                self.acked += 1
                self._done.discard(self.acked)
            ready = [f for m, f in self._waiters if m <= self.acked]
            if ready:
                self._waiters = [(m, f) for m, f in self._waiters if m > self.acked]
        for f in ready:
            self.loop.call_soon_threadsafe(_resolve, f, None)

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            first, self._failed = self._failed is None, self._failed or exc
            waiters, self._waiters = self._waiters, []
        for _m, f in waiters:
            self.loop.call_soon_threadsafe(_resolve, f, exc)
        if first:
            self.loop.call_soon_threadsafe(self.on_fatal, exc)

    def reached(self, n: int) -> bool:
        return self._failed is None and self.acked >= n

    async def wait(self, n: int) -> None:
        """Until every write numbered up to ``n`` was acknowledged (raises if one failed)."""
        with self._lock:
            if self._failed is not None:
                raise self._failed
            if self.acked >= n:
                return
            fut = self.loop.create_future()
            self._waiters.append((n, fut))
        await fut

    async def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        """Produce one record; returns once acknowledged."""
        fut = self.loop.create_future()

        def done(err: KafkaError | None, _msg: Any) -> None:  # producer thread
            exc = None if err is None else KafkaUnavailable(f"{topic}: record not acknowledged: {err.str()}")
            self.loop.call_soon_threadsafe(_resolve, fut, exc)

        self._produce(topic, key=key, value=value, headers=headers, on_delivery=done)
        await fut

    def close(self, timeout_s: float = 30.0) -> int:
        """Stop the delivery thread, then flush what is queued (serving the last reports on this
        thread: one thread at a time, so a partition's reports stay in order); records still
        unacknowledged."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        return self.producer.flush(timeout_s)


def _resolve(fut: asyncio.Future[None], exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)
