"""Offset continuity per partition: no record may be skipped between what the group committed and
what the agent is handed.

Why: faust-streaming can hand an agent a partition's records with a hole in them right after an
assignment (startup or rebalance). A fetch that was prefetched before the "seek to committed"
arrives after it; Faust treats the missing offsets as a gap (as it must for transaction markers
and compacted offsets), acks them, and drops the re-fetched copies as already read
(faust-streaming #216/#221 family; reproduced here: ~80 of 3,000 records produced while a worker
restarted were never handed to the agent, yet committed).

Contract: for every assigned partition the agent calls :meth:`Continuity.gap` before handling a
record. The first record after an assignment is compared with the group's committed offset at
that time (``start``); later records with the offset after the last one handled. A returned
``(first, end)`` range must be read independently and handled *before* the record, in order; the
range may hold no records at all (transaction markers of an EOS producer such as Debezium's
exactly-once source, compacted-away offsets). Records at or below an already handled offset are
re-deliveries; the inbox skips them.

One exception, for throughput: once a partition has handed over a record since its assignment, a
hole of exactly one offset between two records is taken as a transaction marker and not read.
Debezium's exactly-once source writes one control record per partition per transaction, i.e. a
one-offset hole every few records; reading each one cost a broker round trip per transaction and
capped a worker at ~1,000 events/s on a CDC topic (relay bench latency). Faust's skip happens
after an assignment, so the first record is still always compared with the committed offset,
and any wider hole is still read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

TP = tuple[str, int]


@dataclass
class Continuity:
    _next: dict[TP, int] = field(default_factory=dict)  # next offset expected per partition
    _flowing: set[TP] = field(default_factory=set)  # handed over a record since the assignment
    gaps: int = 0  # ranges found and returned for reading
    markers: int = 0  # one-offset holes mid-stream, taken as transaction markers

    def reset(self, tps: Iterable[TP] | None = None) -> None:
        """Forget partitions (all when ``tps`` is None): after a revocation or assignment the
        next record of each is compared with the committed offset again."""
        if tps is None:
            self._next.clear()
            self._flowing.clear()
        else:
            for tp in tps:
                self._next.pop(tp, None)
                self._flowing.discard(tp)

    def known(self, tp: TP) -> bool:
        return tp in self._next

    def next_offset(self, tp: TP) -> int | None:
        """The next offset the agent expects on ``tp`` (None if not started)."""
        return self._next.get(tp)

    def start(self, tp: TP, committed: int) -> None:
        """The group's committed offset (next to read) for ``tp`` at assignment time."""
        self._next[tp] = committed
        self._flowing.discard(tp)

    def gap(self, tp: TP, offset: int) -> tuple[int, int] | None:
        """The offsets ``[first, end)`` that precede ``offset`` and were never handed over, or
        None. Raises KeyError for a partition that was not started."""
        expected = self._next[tp]
        if offset > expected:
            if offset - expected == 1 and tp in self._flowing:
                self.markers += 1
                return None
            self.gaps += 1
            return expected, offset
        return None

    def done(self, tp: TP, offset: int) -> None:
        """``offset`` (and everything before it) was handled."""
        if offset + 1 > self._next.get(tp, -1):
            self._next[tp] = offset + 1
        self._flowing.add(tp)
