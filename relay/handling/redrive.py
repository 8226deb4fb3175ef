"""Redrive bookkeeping without I/O: which dead letters were replayed, which to replay, how fast.

The redrive position of a dead-letter partition is kept the way a consumer group keeps its own:
as the committed offset of the group ``relay-dlq-replay`` on that partition (see
relay/handling/redrive_run.py, which commits it in the same Kafka transaction as the replayed
records). Guarantee: every letter below ``next_offset``, and every offset in ``replayed``, was
replayed once and acknowledged; nothing else was. A letter replayed on its own (``--id``) ahead of
the position is remembered in ``replayed`` (the commit's metadata string) until the position
passes it, so ``replay --all`` does not send it a second time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from relay.errors import RelayError

REDRIVE_GROUP = "relay-dlq-replay"
# Kafka's default offset.metadata.max.bytes is 4096: stay below it.
MAX_METADATA_CHARS = 4000
_METADATA_VERSION = "v1:"


@dataclass(frozen=True)
class Position:
    """Where the redrive of one dead-letter partition stands."""

    next_offset: int = 0
    replayed: frozenset[int] = field(default_factory=frozenset)

    def is_replayed(self, offset: int) -> bool:
        return offset < self.next_offset or offset in self.replayed

    def passed(self, offset: int) -> Position:
        """After ``replay --all`` replayed (or skipped as already replayed) ``offset`` and all before it."""
        return Position(max(self.next_offset, offset + 1), self.replayed).normalized()

    def with_replayed(self, offset: int) -> Position:
        """After one letter (``--id``) was replayed on its own; the letters before it stay pending."""
        if self.is_replayed(offset):
            return self
        return Position(self.next_offset, self.replayed | {offset}).normalized()

    def normalized(self) -> Position:
        """The same facts, with the position moved over a run of individually replayed offsets."""
        nxt = self.next_offset
        while nxt in self.replayed:
            nxt += 1
        return Position(nxt, frozenset(o for o in self.replayed if o >= nxt))

    def metadata(self) -> str:
        """The commit metadata: the offsets ahead of the position replayed on their own, as ranges."""
        text = _METADATA_VERSION + ",".join(
            str(a) if a == b else f"{a}-{b}" for a, b in _ranges(sorted(self.replayed)))
        if len(text) > MAX_METADATA_CHARS:
            raise RelayError(f"{len(self.replayed)} dead letters were replayed one by one ahead of the redrive "
                             "position; that is more than the position can remember: replay --all first")
        return text


def _ranges(offsets: list[int]) -> Iterable[tuple[int, int]]:
    start = prev = None
    for o in offsets:
        if prev is not None and o == prev + 1:
            prev = o
            continue
        if start is not None and prev is not None:
            yield start, prev
        start = prev = o
    if start is not None and prev is not None:
        yield start, prev


def position_from_commit(offset: int, metadata: str | None, *, low: int, high: int) -> Position:
    """The position a committed offset (negative = none) and its metadata stand for, given the
    partition's current watermarks. Letters deleted by retention (below ``low``) cannot be replayed;
    a committed offset beyond ``high`` belongs to a deleted and recreated topic and is ignored."""
    if offset < 0 or offset > high:
        return Position(low)
    replayed: set[int] = set()
    if metadata and metadata.startswith(_METADATA_VERSION):
        for part in filter(None, metadata[len(_METADATA_VERSION):].split(",")):
            a, _, b = part.partition("-")
            replayed.update(range(int(a), int(b or a) + 1))
    return Position(max(offset, low), frozenset(replayed)).normalized()


class Located(Protocol):
    """What the planner needs of a dead letter: where it is and which event it holds."""

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def event_id(self) -> str | None: ...


L = TypeVar("L", bound=Located)


@dataclass(frozen=True)
class Plan(Generic[L]):
    """The letters to send, in partition/offset order, and the matching ones left out as already replayed."""

    send: list[L]
    already_replayed: list[L]


def plan(letters: Sequence[L], positions: dict[int, Position], *, event_id: str | None = None,
         force: bool = False) -> Plan[L]:
    """Which of ``letters`` (of one dead-letter topic) to replay.

    ``event_id`` None: every letter not yet replayed (``--all``). Otherwise only that event's letters;
    letters of it already replayed are sent again only with ``force``.
    """
    wanted = [d for d in letters if event_id is None or d.event_id == event_id]
    wanted.sort(key=lambda d: (d.partition, d.offset))
    if force and event_id is not None:
        return Plan(wanted, [])
    send: list[L] = []
    done: list[L] = []
    for d in wanted:
        (done if positions.get(d.partition, Position()).is_replayed(d.offset) else send).append(d)
    return Plan(send, done)


class RateLimiter:
    """At most ``rate`` acquisitions per second, evenly spaced (no bursts); None or 0 = unlimited."""

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate is not None and rate < 0:
            raise RelayError(f"--rate must be positive, got {rate}")
        self.interval = 1.0 / rate if rate else 0.0
        self.clock, self.sleep = clock, sleep
        self._next: float | None = None

    def wait(self) -> float:
        """Block until the next acquisition is allowed; returns how long it slept."""
        if not self.interval:
            return 0.0
        now = self.clock()
        due = now if self._next is None else max(self._next, now)
        slept = due - now
        if slept > 0:
            self.sleep(slept)
        self._next = due + self.interval
        return slept


def progress_line(topic: str, done: int, total: int, elapsed_s: float) -> str:
    """``outbox.event.order.dlq: 40/100 replayed (9.8/s)``"""
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    return f"{topic}: {done}/{total} replayed ({rate:.1f}/s)"
