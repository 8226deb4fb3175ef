"""Inbox dedup, as pure logic over a mutable mapping (a Faust table in production).

Contract: an event id is *recorded* only after its handler returned; a second delivery of a
recorded id is reported as a duplicate and must not be handled again. The mapping must be
partition-local to the event's source partition (Faust tables are), which is why every
producer of ours uses the Java-compatible partitioner.
"""

from __future__ import annotations

import time
from typing import MutableMapping


class Inbox:
    """``window_s``: how long an id counts as seen (entries older than that are expired; their
    changelog records are deleted by retention, so the changelog stays bounded)."""

    def __init__(self, table: MutableMapping[str, float], window_s: float | None = None) -> None:
        self.table = table
        self.window_s = window_s

    def seen(self, event_id: str, now: float | None = None) -> bool:
        handled_at = self.table.get(event_id)
        if handled_at is None:
            return False
        if self.window_s is None:
            return True
        return (time.time() if now is None else now) - handled_at < self.window_s

    def record(self, event_id: str, handled_at: float) -> None:
        self.table[event_id] = handled_at
