"""One assigned partition's records on their way into the lanes.

A :class:`Feed` holds the records fetched for one topic-partition and hands them to the lanes in
offset order, as long as
- the partition has room in the lanes (``max_in_flight``: backpressure),
- a retry-stage record is due (stages are FIFO, so the head of the buffer decides; a timer wakes
  the feed when it is),
- the subscription's circuit admits records (open: nothing is taken; half-open: one probe).
A feed whose buffer holds more than ``high`` records pauses its partition in the consumer
(librdkafka resumes a paused partition right after the last record it returned, so nothing is
lost or read twice) and resumes it once the buffer is down to ``low``. A closed feed (revoked,
stopping) drops its buffer: the next owner reads those records again from the committed offset.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, Callable

from relay.consume.lanes import Lanes
from relay.handling.breaker import BreakerState, CircuitBreaker
from relay.headers import Header

log = logging.getLogger("relay.consumer")
DUE_AT = Header.RETRY_DUE_AT.value
BREAKER_GAUGE = {BreakerState.CLOSED: 0, BreakerState.OPEN: 1, BreakerState.HALF_OPEN: 2}


class Rec:
    """A fetched record as the pipeline reads it (relay.consume.pipeline.Record); ``ack`` tells
    the engine it and every earlier record of its partition are finished (the lanes ack in order)."""

    __slots__ = ("topic", "partition", "offset", "key", "value", "headers", "timestamp", "_ack")

    def __init__(self, msg: Any, ack: Callable[["Rec"], None], topic: str | None = None,
                 partition: int | None = None) -> None:  # topic, partition: the message's, when known
        self.topic = msg.topic() if topic is None else topic
        self.partition = msg.partition() if partition is None else partition
        self.offset = msg.offset()
        self.key, self.value, self.headers = msg.key(), msg.value(), msg.headers() or []
        kind, ms = msg.timestamp()
        self.timestamp = ms / 1000 if kind else None
        self._ack = ack

    @property
    def message(self) -> "Rec":  # the lanes' view of an item
        return self

    def ack(self) -> None:
        self._ack(self)

    def due_at(self) -> float:
        for name, raw in self.headers:
            if name == DUE_AT:
                return float(raw or b"0")
        return 0.0


class Feed:
    def __init__(self, topic: str, partition: int, lanes: Lanes, breaker: CircuitBreaker, *, stage: bool,
                 pause: Callable[[str, int, bool], None], gauge: Any, high: int, low: int,
                 ack: Callable[[Rec], None] = lambda _rec: None) -> None:
        self.topic, self.partition, self.lanes, self.breaker, self.stage = topic, partition, lanes, breaker, stage
        self.pause, self.gauge, self.high, self.low, self._ack = pause, gauge, high, low, ack
        self.buffer: deque[Rec] = deque()
        self.paused = self.closed = self._warned = self._acks_open = False
        self._timer: asyncio.TimerHandle | None = None

    def acked(self, record: Rec) -> None:
        """A record of this feed and every earlier one are finished; ignored once the feed is
        closed (a record that finished after its partition was revoked is the next owner's)."""
        if not self.closed or self._acks_open:
            self._ack(record)

    def push(self, records: list[Rec]) -> None:
        self.buffer.extend(records)
        self.pump()

    def pump(self) -> None:
        """Hand over what may go now; schedule a wake-up when the head must wait."""
        if self._timer is not None or self.closed:
            return
        buffer, lanes, stage = self.buffer, self.lanes, self.stage
        room = min(len(buffer), lanes.room(self.topic, self.partition))
        if not stage and self.breaker.state is BreakerState.CLOSED:  # nothing waits: the bulk path
            lanes.submit_run([buffer.popleft() for _ in range(room)])
            self._flow()
            return
        for _ in range(room):
            wait = buffer[0].due_at() - time.time() if stage else 0.0
            if wait <= 0 and self.breaker.state is not BreakerState.CLOSED and not self._admitted():
                wait = min(max(self.breaker.retry_after_s(), 0.05), 1.0)
            if wait > 0:
                self._timer = asyncio.get_running_loop().call_later(wait, self._wake)
                break
            lanes.try_submit(buffer.popleft())
        self._flow()

    def _admitted(self) -> bool:
        """The circuit (not closed) admits the head now: half-open admits one probe."""
        breaker = self.breaker
        allowed = breaker.allow()
        self.gauge.set(BREAKER_GAUGE[breaker.state])
        if not allowed and not self._warned and breaker.state is BreakerState.OPEN:
            log.warning("%s: circuit open after repeated retriable handler failures; taking no records for %.1f s, "
                        "then one probe", self.topic, breaker.retry_after_s())
        self._warned = not allowed
        return allowed

    def _wake(self) -> None:
        self._timer = None
        self.pump()

    def _flow(self) -> None:
        size = len(self.buffer)
        if not self.paused and size >= self.high:
            self.paused = True
            self.pause(self.topic, self.partition, True)
        elif self.paused and size <= self.low:
            self.paused = False
            self.pause(self.topic, self.partition, False)

    def close(self, *, keep_acks: bool = False) -> None:
        """Revoked or stopping: drop what was not handed over; no more wake-ups; a partition
        this feed paused is resumed (librdkafka keeps the pause across a revoke and a new
        assignment of the same partition: it would never be fetched again). ``keep_acks``
        (stopping): records still being handled are acknowledged when they finish."""
        self.closed, self._acks_open = True, keep_acks
        self.buffer.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.paused:
            self.paused = False
            self.pause(self.topic, self.partition, False)
