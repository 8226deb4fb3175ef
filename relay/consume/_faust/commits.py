"""Offset commits that keep up with topics whose offsets have holes (transaction markers).

Why: Debezium's exactly-once source (and any transactional producer) writes a control record per
transaction and partition, so a CDC topic has a hole every few records. faust-streaming records a
hole as a "gap" interval that also covers the *next* record's offset; when it fills the gap into
the acked offsets, that record's offset is there twice (once from the gap, once from its ack).
Faust then takes the first run of consecutive numbers, the duplicate ends the run, and each commit
moves past at most one hole: the committed offset falls further behind under load, and a restart
re-reads thousands of records (harmless for the inbox, but the group lag never reaches zero and
graceful stops commit almost nothing). Known upstream: robinhood/faust#625, #559.

Contract of :func:`next_commit` (the replacement of ``Consumer._new_offset``): with acked offsets
A, gap intervals G and committed offset c (next to read),
- only offsets in A, and hole offsets of G not above max(A), count as done;
- the result is one past the longest run of consecutive done offsets starting at the lowest one,
  or None when that run starts more than one past c (a record in front is not finished; Faust
  allows one offset of slack there, because its gap bookkeeping starts at c + 1);
- A and G keep only what is above the result (so each offset is used once, duplicates vanish).
Our agents ack in offset order per partition (relay.consume.lanes), so a gap interval never lets the
commit pass an unfinished record.
"""

from __future__ import annotations

from typing import Any, Optional

from faust.transport.drivers import aiokafka as faust_aiokafka

from relay.consume._faust import compat


def next_commit(acked: list[int], gaps: Any, committed: Optional[int]) -> Optional[int]:
    """The offset to commit next for one partition (see the module contract); updates ``acked``
    in place and chops ``gaps`` (an ``intervaltree.IntervalTree``, end exclusive)."""
    if not acked:
        return None
    top = max(acked)
    done = set(acked)
    if gaps:
        for interval in gaps.overlap(0, top + 1):
            done.update(range(interval.begin, min(interval.end, top + 1)))
        gaps.chop(0, top + 1)
    start = min(done)
    if committed and start - committed > 1:
        acked[:] = sorted(done)  # keep the filled holes: the gap tree no longer has them
        return None
    end = start
    while end + 1 in done:
        end += 1
    acked[:] = sorted(o for o in done if o > end)
    return end + 1


class Consumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with :func:`next_commit` as its commit-offset rule."""

    def _new_offset(self, tp: Any) -> Optional[int]:  # a private Faust hook: compat.OVERRIDES
        acked, gaps, committed = compat.commit_state(self, tp)
        before = set(acked)
        offset = next_commit(acked, gaps, committed)
        if offset is not None:
            compat.forget_acked(self, tp, before - set(acked))
        return offset


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
