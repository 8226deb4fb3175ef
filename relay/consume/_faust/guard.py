"""The agent side of relay.handling.continuity: what an agent calls around each record so that
nothing Faust failed to hand over is skipped.

``ContinuityGuard.attach(app)`` records the group's committed offsets of the guarded topics when
partitions are assigned (before any record of the new assignment is processed: Faust may commit
offsets it treated as a gap soon after, so asking later could return an offset past the hole).
``missed(message)`` returns the records of a hole in front of ``message``, read independently, to
be handled first and in order; ``done(message)`` advances the partition.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from relay.consume._faust.gapfill import GapReader, Record
from relay.errors import KafkaUnavailable
from relay.handling.continuity import Continuity

log = logging.getLogger("relay.consumer")


class ContinuityGuard:
    def __init__(self, reader: GapReader, topics: list[str], metrics: Any) -> None:
        self.reader, self.topics, self.metrics = reader, set(topics), metrics
        self.continuity = Continuity()

    def attach(self, app: Any) -> None:
        @app.on_partitions_assigned.connect
        async def on_assigned(_sender: Any, assigned: Any, **_kw: Any) -> None:
            mine = [(tp.topic, tp.partition) for tp in assigned if tp.topic in self.topics]
            try:  # read first, then reset and start with no await between: nothing can interleave
                committed = await asyncio.to_thread(self.reader.committed_many, mine)
            except Exception as exc:  # noqa: BLE001 - never fail the rebalance; ask per partition later
                log.warning("committed offsets at assignment unavailable (%s); asking at the first record", exc)
                committed = {}
            self.continuity.reset()
            for tp, offset in committed.items():
                self.continuity.start(tp, offset)

        @app.on_partitions_revoked.connect
        async def on_revoked(_sender: Any, revoked: Any, **_kw: Any) -> None:
            self.continuity.reset((tp.topic, tp.partition) for tp in revoked)

        self._handlers = (on_assigned, on_revoked)  # signals keep weak references

    async def missed(self, message: Any) -> list[Record]:
        tp = (message.topic, message.partition)
        if not self.continuity.known(tp):  # no assignment seen (e.g. the signal raced): ask now
            self.continuity.start(tp, await _retrying(self.reader.committed, *tp))
        gap = self.continuity.gap(tp, message.offset)
        if gap is None:
            return []
        records = await _retrying(self.reader.read, tp[0], tp[1], *gap)
        if records:
            self.metrics.recovered.labels(tp[0]).inc(len(records))
            log.warning("%s[%d]: %d record(s) at offsets %d..%d were not handed over by Faust; "
                        "read and handled them before offset %d", tp[0], tp[1], len(records),
                        records[0].offset, records[-1].offset, message.offset)
        return records

    def done(self, message: Any) -> None:
        self.continuity.done((message.topic, message.partition), message.offset)


async def _retrying(fn, *args: Any) -> Any:
    """Run a blocking read in a thread until it succeeds: Kafka being briefly unavailable must
    neither skip the hole nor crash the agent (which would cancel records in flight)."""
    delay = 0.5
    while True:
        try:
            return await asyncio.to_thread(fn, *args)
        except KafkaUnavailable as exc:
            log.warning("%s; retrying in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
