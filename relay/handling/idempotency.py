"""Inbox dedup, as pure logic over a mutable mapping (a Faust table in production).

Contract: an event id is *recorded* only after its handler returned; a second delivery of a
recorded id is reported as a duplicate and must not be handled again. The mapping must be
partition-local to the event's source partition (Faust tables are), which is why every
producer of ours uses the Java-compatible partitioner.

Expiry: an entry older than ``window_s`` no longer counts as seen. Entries this process recorded
are also *removed* once expired (``expire``, called while handling a record of the same
partition, so that a Faust table writes the tombstone to the right changelog partition), so the
table does not grow with uptime; the changelog drops them by retention (= the window). Entries
recovered from the changelog at startup are not indexed by partition; they age out of the
changelog and are gone after the next restart.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Hashable, Iterable, MutableMapping


class Inbox:
    """``window_s``: how long an id counts as seen (None: forever)."""

    def __init__(self, table: MutableMapping[str, float], window_s: float | None = None) -> None:
        self.table = table
        self.window_s = window_s
        self._recorded: dict[Hashable, deque[tuple[float, str]]] = {}

    def seen(self, event_id: str, now: float | None = None) -> bool:
        handled_at = self.table.get(event_id)
        if handled_at is None:
            return False
        if self.window_s is None:
            return True
        return (time.time() if now is None else now) - handled_at < self.window_s

    def record(self, event_id: str, handled_at: float, partition: Hashable = None) -> None:
        self.table[event_id] = handled_at
        if self.window_s is not None:
            self._recorded.setdefault(partition, deque()).append((handled_at, event_id))

    def expire(self, partition: Hashable = None, now: float | None = None, budget: int = 64) -> int:
        """Remove up to ``budget`` expired entries that this process recorded for ``partition``
        (oldest first; an id recorded again later is kept); returns how many were removed."""
        if self.window_s is None:
            return 0
        queue = self._recorded.get(partition)
        cutoff = (time.time() if now is None else now) - self.window_s
        removed = 0
        while queue and removed < budget and queue[0][0] <= cutoff:
            handled_at, event_id = queue.popleft()
            if self.table.get(event_id) == handled_at:
                del self.table[event_id]
                removed += 1
        return removed

    def forget(self, partitions: Iterable[Hashable]) -> None:
        """Partitions revoked: their entries are another worker's to expire now."""
        for p in partitions:
            self._recorded.pop(p, None)
