"""Concurrency for one agent without giving up per-key order or at-least-once.

faust-streaming's own ``concurrency=N`` runs N actors on one stream: two events of a key can be
handled at once, and an event's offset can be committed while an earlier one is still in flight
(faust-streaming#606). Instead, the agent (concurrency 1, ``noack`` stream) hands each record to
one of N *lanes* by key hash; a lane handles its records one after another.

Contract:
- per-key order: a key always maps to the same lane, and a lane is FIFO;
- bounded in flight: at most ``limit`` records per partition are taken but unfinished; the agent
  waits for room (backpressure: Faust stops fetching when its buffer is full);
- ordered acknowledgement: an event is acked only when it *and every earlier event of its
  partition* are finished, so the committed offset never passes an unfinished record, whatever
  Faust's commit logic does with out-of-order acks;
- a lane never dies of a handler error: ``process`` routes every failure (retry stage, dead
  letter); anything escaping it is logged and the record is left unacked, so it is re-delivered
  after a restart rather than skipped.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections import deque
from typing import Any, Awaitable, Callable

log = logging.getLogger("relay.consumer")


class _Partition:
    def __init__(self) -> None:
        self.pending: deque[list] = deque()  # [event, finished, started] in offset order
        self.dropped = False  # revoked: its records not started yet are skipped
        self.room = asyncio.Condition()
        self.waiters = 0  # tasks waiting on `room` (notified only when there are some)

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with self.room:
            self.waiters += 1
            try:
                await self.room.wait_for(predicate)
            finally:
                self.waiters -= 1


class Lanes:
    def __init__(self, count: int, limit: int, process: Callable[[Any], Awaitable[None]],
                 bind: Callable[[Any], None] = lambda _event: None, *, batch: int = 1,
                 process_batch: Callable[[list[Any]], Awaitable[None]] | None = None,
                 on_room: Callable[[str, int], None] | None = None, ack_prefix: bool = False) -> None:
        """``bind(event)`` runs in the lane's task before ``process``: Faust tables find the
        partition of a write through the current event, a per-task context variable. With
        ``process_batch``, a lane takes up to ``batch`` queued events at once and hands them over
        together (``process_batch`` binds each itself); they are acked once all are finished.
        ``on_room(topic, partition)`` runs after records of that partition were acked (a feeder
        that offers records with :meth:`try_submit` refills then). ``ack_prefix``: of a finished
        prefix only the last event is acked, for engines whose ack covers every earlier record of
        the partition (the kafka engine's; Faust needs each event acked)."""
        if count < 1 or limit < 1 or batch < 1:
            raise ValueError(f"lanes={count}, in-flight limit={limit}, batch={batch}: each must be >= 1")
        self.count, self.limit, self.process, self.bind = count, limit, process, bind
        self.batch, self.process_batch, self.on_room, self.ack_prefix = batch, process_batch, on_room, ack_prefix
        self._queues: list[asyncio.Queue] = []
        self._tasks: list[asyncio.Task] = []
        self._partitions: dict[tuple[str, int], _Partition] = {}

    def _start(self) -> None:
        if not self._tasks:
            self._queues = [asyncio.Queue() for _ in range(self.count)]
            self._tasks = [asyncio.ensure_future(self._lane(q)) for q in self._queues]

    def _part(self, topic: str, partition: int) -> _Partition:
        part = self._partitions.get((topic, partition))
        if part is None:  # not setdefault(): a _Partition (with its Condition) per call costs
            part = self._partitions[(topic, partition)] = _Partition()
        return part

    def room(self, topic: str, partition: int) -> int:
        """How many more records of the partition may be taken now."""
        part = self._partitions.get((topic, partition))
        return self.limit - (len(part.pending) if part is not None else 0)

    def lane_of(self, key: bytes | None) -> int:
        return zlib.crc32(key or b"") % self.count if self.count > 1 else 0

    async def wait_room(self, topic: str, partition: int) -> None:
        """Wait until the partition has room (the caller is the only one adding records)."""
        part = self._part(topic, partition)
        await part.wait_for(lambda: len(part.pending) < self.limit)

    async def submit(self, event: Any) -> None:
        """Queue ``event`` on its key's lane once its partition has room."""
        self._start()
        message = event.message
        part = self._part(message.topic, message.partition)
        await part.wait_for(lambda: len(part.pending) < self.limit)
        entry = [event, False, False]
        part.pending.append(entry)
        await self._queues[self.lane_of(message.key)].put([(part, entry)])

    def try_submit(self, event: Any) -> bool:
        """Queue ``event`` on its key's lane if its partition has room; False (nothing queued) if not."""
        self._start()
        message = event.message
        part = self._part(message.topic, message.partition)
        if len(part.pending) >= self.limit:
            return False
        entry = [event, False, False]
        part.pending.append(entry)
        self._queues[self.lane_of(message.key)].put_nowait([(part, entry)])
        return True

    def submit_run(self, events: list[Any]) -> None:
        """Queue ``events`` (one partition's, in offset order, within its :meth:`room`) on their
        keys' lanes: one queue item per lane, not per event (the feeder's bulk path)."""
        if not events:
            return
        self._start()
        first = events[0].message
        part = self._part(first.topic, first.partition)
        pending = part.pending
        if self.count == 1:
            run = []
            for event in events:
                entry = [event, False, False]
                pending.append(entry)
                run.append((part, entry))
            self._queues[0].put_nowait(run)
            return
        runs: dict[int, list[tuple[_Partition, list]]] = {}
        for event in events:
            entry = [event, False, False]
            pending.append(entry)
            runs.setdefault(self.lane_of(event.message.key), []).append((part, entry))
        for lane, lane_run in runs.items():
            self._queues[lane].put_nowait(lane_run)

    async def drain(self, topic: str, partition: int) -> None:
        """Wait until every taken record of the partition is finished."""
        part = self._partitions.get((topic, partition))
        if part is not None:
            await part.wait_for(lambda: not part.pending)

    async def drop(self, topic: str, partition: int) -> None:
        """The partition was revoked: forget its records that no lane started (the next owner
        reads them again), then wait until the started ones are finished (their acks are the
        caller's to ignore). A later record of the same partition starts afresh."""
        part = self._partitions.pop((topic, partition), None)
        if part is not None:
            part.dropped = True
            part.pending = deque(entry for entry in part.pending if entry[2])
            await part.wait_for(lambda: not part.pending)

    def pending(self, topic: str, partition: int) -> int:
        """Records of the partition taken but not acked yet."""
        part = self._partitions.get((topic, partition))
        return len(part.pending) if part is not None else 0

    def in_flight(self) -> int:
        return sum(len(p.pending) for p in self._partitions.values())

    async def _lane(self, queue: asyncio.Queue) -> None:
        carry: list[tuple[_Partition, list]] = []  # taken from the queue beyond the last batch
        while True:
            taken = carry or list(await queue.get())  # queue items are runs: lists of (part, entry)
            while len(taken) < self.batch and not queue.empty():
                taken.extend(queue.get_nowait())
            taken, carry = taken[:self.batch], taken[self.batch:]
            events = []
            for part, entry in taken:
                if not part.dropped:
                    entry[2] = True  # started
                    events.append(entry[0])
            if len(events) < len(taken):
                taken = [(part, entry) for part, entry in taken if not part.dropped]
            if not taken:
                continue
            try:
                await self._run(events)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - process routes failures; this is a bug: keep the lane
                log.exception("unrouted failure on %s; record(s) left unacked", taken[0][1][0].message)
                continue
            for _part, entry in taken:
                entry[1] = True
            for part in {id(p): p for p, _entry in taken}.values():
                self._ack_finished(part)
                if part.waiters:
                    async with part.room:
                        part.room.notify_all()
            if self.on_room is not None:
                for topic, partition in {(e[0].message.topic, e[0].message.partition) for _p, e in taken}:
                    self.on_room(topic, partition)

    def _ack_finished(self, part: _Partition) -> None:
        """Pop the partition's finished prefix and ack it, in order (only its last event with
        ``ack_prefix``)."""
        pending, last = part.pending, None
        while pending and pending[0][1]:
            last = pending.popleft()[0]
            if not self.ack_prefix:
                last.ack()
        if self.ack_prefix and last is not None:
            last.ack()

    async def _run(self, events: list[Any]) -> None:
        if self.process_batch is not None:
            await self.process_batch(events)
            return
        for event in events:
            self.bind(event)
            await self.process(event.message)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
