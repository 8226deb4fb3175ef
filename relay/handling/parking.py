"""Per-key order across retries: while an event of key K waits for a retry, later events of K
are parked behind it; other keys keep flowing.

Pure bookkeeping over a mutable mapping (a Faust table co-partitioned with the source in
production): ``parked[key] = ParkedKey(head, stage, behind)``.

Protocol (the Faust agents follow it; the unit tests prove the ordering rules):
- source agent, event e of key K: ``route(K)`` -> HANDLE (K not parked) or PARK (K parked:
  forward e to the head's current stage with role "behind", ``add_behind``).
- handling fails retriably: ``park_head(K, e, stage)`` and forward e to that stage as "head".
- stage agent, record r of key K: if r is the head -> retry it; success or dead letter ->
  ``head_done(K)``: the next behind record becomes handleable *in order* (it follows the head in
  the same stage partition). If r is "behind" while K's head is still waiting in a later stage,
  it moves along to that stage (``route`` says PARK again), so it never overtakes the head.
  A behind record is handled while K is still parked and only then ``behind_done``: events of K
  arriving meanwhile queue behind it rather than overtaking it.
- when the last parked record of K is done, K is unparked and new events flow directly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import MutableMapping


class Route(StrEnum):
    HANDLE = "handle"
    PARK = "park"


@dataclass(frozen=True)
class ParkedKey:
    head: str | None  # event id waiting for a retry; None once it completed
    stage: int  # stage topic where the head (and everything behind it) currently waits
    behind: int  # records of this key forwarded behind the head and not yet done
    tail: int = 0  # sequence number given to the last behind record (1, 2, ...)
    done: int = 0  # highest sequence number handled: a behind record is handled only at done + 1


class Parking:
    def __init__(self, table: MutableMapping[str, ParkedKey | None]) -> None:
        self.table = table

    def state(self, key: str) -> ParkedKey | None:
        return self.table.get(key)

    def route(self, key: str) -> Route:
        return Route.PARK if self.table.get(key) is not None else Route.HANDLE

    def park_head(self, key: str, event_id: str, stage: int) -> None:
        current = self.table.get(key)
        if current is None:
            self.table[key] = ParkedKey(event_id, stage, 0)
        else:  # a behind record failed and leads now: the count and the sequence carry on
            self.table[key] = replace(current, head=event_id, stage=stage)

    def add_behind(self, key: str) -> int:
        """One more record of ``key`` parked; returns the stage it must be forwarded to."""
        current = self.table[key]
        assert current is not None, f"add_behind({key!r}): the key is not parked"
        self.table[key] = replace(current, behind=current.behind + 1, tail=current.tail + 1)
        return current.stage

    def turn(self, key: str, seq: int) -> bool:
        """May the behind record ``seq`` of ``key`` be handled now? Only when every earlier one
        was (they can sit in another stage: one that was parked while its head moved on)."""
        current = self.table.get(key)
        return current is None or not seq or seq == current.done + 1

    def head_done(self, key: str) -> None:
        """The head was handled or dead-lettered: behind records may now be handled in order."""
        current = self.table.get(key)
        if current is not None:
            self._settle(key, replace(current, head=None))

    def behind_done(self, key: str, seq: int = 0) -> None:
        current = self.table.get(key)
        if current is not None:
            self._settle(key, replace(current, behind=max(0, current.behind - 1), done=max(current.done, seq)))

    def is_head(self, key: str, event_id: str) -> bool:
        current = self.table.get(key)
        return current is not None and current.head == event_id

    def head_pending(self, key: str) -> bool:
        current = self.table.get(key)
        return current is not None and current.head is not None

    def _settle(self, key: str, state: ParkedKey) -> None:
        if state.head is None and state.behind == 0:
            self.table[key] = None  # unparked (a None value, as table deletes are changelogged)
        else:
            self.table[key] = state

    def parked_keys(self) -> int:
        return sum(1 for v in self.table.values() if v is not None)
