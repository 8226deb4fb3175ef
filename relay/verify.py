"""Gap detector: did every committed event reach Kafka, how often, and in commit order?

Pure logic over what a test or benchmark recorded: the ids committed per aggregate (in commit
order) and the records read back from Kafka (key, ``id`` header, partition, offset). Used by the
conformance and kill tests and by ``relay bench``; never by the relays themselves.

At-least-once delivery allows duplicates, and a replay after a crash re-delivers earlier events
*after* later ones; order is therefore judged on each event's *first* delivery, which is what an
idempotent consumer acts on.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence


@dataclass(frozen=True)
class Delivered:
    key: str | None
    event_id: str
    partition: int
    offset: int


@dataclass
class GapReport:
    committed: int
    delivered_distinct: int
    lost: list[str] = field(default_factory=list)
    duplicates: int = 0  # deliveries beyond the first
    unexpected: int = 0  # records whose id was never committed by this run
    wrong_key: list[str] = field(default_factory=list)
    split_aggregates: list[str] = field(default_factory=list)  # an aggregate on several partitions
    out_of_order: list[str] = field(default_factory=list)  # aggregates whose first deliveries are misordered

    @property
    def ok(self) -> bool:
        return not (self.lost or self.wrong_key or self.split_aggregates or self.out_of_order)

    def summary(self) -> str:
        return (f"committed {self.committed}, delivered {self.delivered_distinct} distinct, lost {len(self.lost)}, "
                f"duplicates {self.duplicates}, wrong key {len(self.wrong_key)}, split aggregates "
                f"{len(self.split_aggregates)}, out of order {len(self.out_of_order)}")


def detect_gaps(committed: Mapping[str, Sequence[str]], records: Iterable[Delivered]) -> GapReport:
    """``committed``: aggregate id -> event ids in commit order."""
    owner = {eid: agg for agg, ids in committed.items() for eid in ids}
    copies: Counter[str] = Counter()
    first: dict[str, Delivered] = {}
    unexpected = 0
    for rec in records:
        if rec.event_id not in owner:
            unexpected += 1
            continue
        copies[rec.event_id] += 1
        first.setdefault(rec.event_id, rec)
    report = GapReport(committed=len(owner), delivered_distinct=len(first), unexpected=unexpected,
                       duplicates=sum(n - 1 for n in copies.values()))
    report.lost = [eid for eid in owner if eid not in first]
    report.wrong_key = [eid for eid, rec in first.items() if rec.key != owner[eid]]
    partitions: dict[str, set[int]] = defaultdict(set)
    for eid, rec in first.items():
        partitions[owner[eid]].add(rec.partition)
    report.split_aggregates = sorted(agg for agg, parts in partitions.items() if len(parts) > 1)
    for agg, ids in committed.items():
        delivered = [first[eid] for eid in ids if eid in first]
        positions = [(d.partition, d.offset) for d in delivered]
        if positions != sorted(positions):
            report.out_of_order.append(agg)
    return report
