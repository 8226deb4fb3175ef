"""Partition-local tables backed by a compacted changelog topic (the inbox and the parking table).

Contract:
- a table is a mapping per partition of its changelog (= the source partition, co-partitioned);
  reads and writes go to the partition bound in the current task (:func:`bind`), as Faust tables
  go to the current event's partition;
- every write is produced to the changelog partition (key and value JSON, a delete is a ``null``
  value) through the engine's producer; the engine commits a source offset only after the
  changelog records written before it were acknowledged (relay.consume._kafka.deliveries);
- :meth:`ChangelogTable.restore` rebuilds a partition from its changelog (read up to the high
  watermark) before any record of that partition is handled; :meth:`ChangelogTable.drop` forgets
  a revoked one;
- the topic names and the encoding are Faust's (``<app>-<table>-changelog``, JSON key, JSON
  value), so a consumer group can switch engines and keep its inbox and its parked keys.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from math import isfinite
from typing import Any, Callable, Iterator, MutableMapping

PARTITION: ContextVar[int] = ContextVar("relay_partition", default=-1)

Produce = Callable[[str, int, bytes, bytes | None], None]  # topic, partition, key, value


def bind(partition: int) -> None:
    """Reads and writes of this task go to ``partition`` from now on."""
    PARTITION.set(partition)


def _json_key(key: str) -> bytes:
    """``json.dumps(key).encode()``, without json for the usual printable ASCII ids."""
    if key.isascii() and key.isprintable() and '"' not in key and "\\" not in key:
        return b'"%s"' % key.encode()
    return json.dumps(key).encode()


def changelog_topic(app_id: str, table: str) -> str:
    return f"{app_id}-{table}-changelog"


class ChangelogTable(MutableMapping[str, Any]):
    """One table: ``encode``/``decode`` map values to the changelog's JSON (default: JSON as is)."""

    def __init__(self, topic: str, produce: Produce, *, encode: Callable[[Any], Any] = lambda v: v,
                 decode: Callable[[Any], Any] = lambda v: v, timestamps: bool = False) -> None:
        """``timestamps``: the values are epoch seconds, written to the changelog to the
        millisecond (``b"%.3f"``: 0.2 µs a record against 0.55 for the shortest repr)."""
        self.topic, self.produce, self.encode, self.decode = topic, produce, encode, decode
        self.timestamps = timestamps
        self.parts: dict[int, dict[str, Any]] = {}

    def _part(self) -> dict[str, Any]:
        p = PARTITION.get()
        part = self.parts.get(p)
        if part is None:
            if p < 0:
                raise RuntimeError(f"{self.topic}: no partition bound in this task (relay.consume._kafka.tables.bind)")
            part = self.parts[p] = {}
        return part

    def get(self, key: str, default: Any = None) -> Any:
        return self._part().get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._part()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        part = self._part()
        if value is None:
            part.pop(key, None)
        else:
            part[key] = value
        self.produce(self.topic, PARTITION.get(), _json_key(key), None if value is None else self._raw(value))

    def _raw(self, value: Any) -> bytes:
        if type(value) is float and isfinite(value):
            # what json.dumps gives for a finite float, 5x faster (to the ms for timestamps)
            return b"%.3f" % value if self.timestamps else repr(value).encode()
        return json.dumps(self.encode(value), separators=(",", ":")).encode()

    def __delitem__(self, key: str) -> None:
        self[key] = None

    def __iter__(self) -> Iterator[str]:
        return iter([k for part in self.parts.values() for k in part])

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts.values())

    def values(self) -> list[Any]:  # type: ignore[override]  # one pass over every partition
        return [v for part in self.parts.values() for v in part.values()]

    def apply(self, partition: int, key: bytes | None, value: bytes | None) -> None:
        """One changelog record read back (restore): the latest value of its key wins."""
        if key is None:
            return
        name = json.loads(key)
        part = self.parts.setdefault(partition, {})
        decoded = None if value is None else json.loads(value)
        if decoded is None:
            part.pop(name, None)
        else:
            part[name] = self.decode(decoded)

    def restoring(self, partition: int) -> None:
        """A partition about to be restored starts empty."""
        self.parts[partition] = {}

    def drop(self, partitions: set[int]) -> None:
        for p in partitions:
            self.parts.pop(p, None)
