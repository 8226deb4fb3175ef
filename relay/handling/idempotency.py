"""Inbox dedup, as pure logic over a mutable mapping (a Faust table in production).

Contract: an event id is *recorded* only after its handler returned; a second delivery of a
recorded id is reported as a duplicate and must not be handled again. The mapping must be
partition-local to the event's source partition (Faust tables are), which is why every
producer of ours uses the Java-compatible partitioner.
"""

from __future__ import annotations

from typing import MutableMapping


class Inbox:
    def __init__(self, table: MutableMapping[str, float]) -> None:
        self.table = table

    def seen(self, event_id: str) -> bool:
        return self.table.get(event_id) is not None

    def record(self, event_id: str, handled_at: float) -> None:
        self.table[event_id] = handled_at
