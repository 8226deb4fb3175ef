"""The consumer's routing decisions, sans I/O: for one record, handle it now or forward it to a
retry stage; after a failure, retry or dead-letter; and the parking bookkeeping that keeps per-key
order across retries (relay.handling.parking states the protocol).

Everything here is pure: a :class:`Router` over a :class:`~relay.handling.parking.Parking`
(a dict in tests, a Faust table in a worker) returns actions; :mod:`relay.consume.pipeline`
executes them (sends, handler calls). The in-memory harness (``relay.testing``) and the Faust
worker run the same decisions.

Topics per source topic T: stages ``T.retry.1 .. T.retry.n`` and ``T.dlq``. A record forwarded
to a stage is a *head* (it failed and waits for its retry) or *behind* (a later record of a
parked key, queued behind the head in the head's stage, in order by ``seq``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Callable, Mapping

from relay.errors import Reject
from relay.handling.parking import Parking, Route
from relay.handling.retry import RetryPolicy, Verdict, classify
from relay.headers import Header

_ID = Header.ID.value
REQUEUE_S, MAX_REQUEUES = 0.2, 600  # a behind record waits for its turn at most ~2 minutes


class Role(StrEnum):
    HEAD = "head"
    BEHIND = "behind"


@dataclass(frozen=True)
class Delivery:
    """The routing facts of one record: where it was read and what its retry headers say."""

    key: str | None
    event_id: str
    stage: int = 0  # 0: the source topic, n: retry stage n
    role: Role | None = None  # on a stage: head or behind
    attempt: int = 1  # the attempt this delivery is (1: first delivery)
    seq: int = 0  # behind records: their place in the key's queue (1, 2, ...)
    requeues: int = 0  # behind records: how often they waited for their turn
    first_failure: datetime | None = None

    @classmethod
    def read(cls, key: bytes | None, headers: Mapping[str, bytes | None], stage: int) -> "Delivery":
        """From a record's key and headers (``stage`` from the topic it came from)."""
        if not stage:  # the source topic: routing reads only the key and the event id
            raw_id = headers.get(_ID)
            source = _new(cls)  # the defaults of every other field, without a frozen __init__ (hot path)
            source.__dict__.update(_SOURCE_DEFAULTS, key=key.decode("utf-8", "replace") if key is not None else None,
                                   event_id=raw_id.decode("utf-8", "replace") if raw_id else "")
            return source

        def text(name: Header) -> str:
            raw = headers.get(name.value)
            return raw.decode("utf-8", "replace") if raw else ""

        role, first = text(Header.RETRY_ROLE), text(Header.RETRY_FIRST_FAILURE_AT)
        return cls(key=key.decode("utf-8", "replace") if key is not None else None,
                   event_id=text(Header.ID), stage=stage,
                   role=Role(role) if stage and role in Role._value2member_map_ else None,
                   attempt=int(text(Header.RETRY_ATTEMPT) or 1) if stage else 1,
                   seq=int(text(Header.RETRY_SEQ) or 0), requeues=int(text(Header.RETRY_REQUEUES) or 0),
                   first_failure=datetime.fromisoformat(first) if first else None)


_new = object.__new__
_SOURCE_DEFAULTS = {"stage": 0, "role": None, "attempt": 1, "seq": 0, "requeues": 0, "first_failure": None}


@dataclass(frozen=True)
class Forward:
    """Send the record to retry stage ``stage`` (acked before its source offset is)."""

    stage: int
    role: Role
    attempt: int
    delay_s: float
    first_failure: datetime
    seq: int = 0
    requeues: int = 0


class After(StrEnum):
    """Parking bookkeeping owed once an attempt ended."""

    NOTHING = "nothing"
    HEAD_DONE = "head_done"  # the head finished (handled, skipped or dead-lettered): unblock its key
    BEHIND_DONE = "behind_done"  # a behind record had its turn (finished or now leads as head)


@dataclass(frozen=True)
class Attempt:
    """Decode and handle the record now, as attempt ``number``."""

    number: int
    first_failure: datetime | None = None
    after: After = After.NOTHING
    lost_head: bool = False  # it waited too long for its head: taken as lost (a worker died mid-retry)


@dataclass(frozen=True)
class DeadLetter:
    """Write the record to the dead-letter topic with ``reason``; then it is finished."""

    reason: str


_FIRST = Attempt(1)  # the usual action (immutable, shared)


class Router:
    """Routing over one source topic's parking table; ``now`` gives the first-failure time."""

    def __init__(self, parking: Parking, policy: RetryPolicy) -> None:
        self.parking, self.policy = parking, policy

    def route(self, d: Delivery, now: Callable[[], datetime]) -> Forward | Attempt:
        """What to do with a delivery read from the source (stage 0) or a retry stage; ``now()``
        is asked only when the decision needs the time (a parked key): the usual record of an
        unparked key costs no clock read."""
        if d.stage == 0:
            return self._source(d, now)
        if d.key is None or d.role is None:
            return Attempt(d.attempt, d.first_failure)
        if d.role is Role.HEAD:
            was_head = self.parking.is_head(d.key, d.event_id)
            return Attempt(d.attempt, d.first_failure, After.HEAD_DONE if was_head else After.NOTHING)
        return self._behind(d, now)

    def _source(self, d: Delivery, now: Callable[[], datetime]) -> Forward | Attempt:
        key = d.key
        if key is None or self.parking.route(key) is not Route.PARK:
            return _FIRST
        state = self.parking.state(key)
        assert state is not None  # PARK: parked
        if self.parking.is_head(key, d.event_id):
            # parked, then the worker died before its copy reached the stage: send it again
            return Forward(state.stage, Role.HEAD, 2, 0.0, now())
        stage = self.parking.add_behind(key)
        behind = self.parking.state(key)
        assert behind is not None  # add_behind: parked
        return Forward(stage, Role.BEHIND, 1, 0.0, now(), seq=behind.tail)

    def _behind(self, d: Delivery, now: Callable[[], datetime]) -> Forward | Attempt:
        key = d.key
        assert key is not None
        first = d.first_failure or now()
        pending = self.parking.state(key) if self.parking.head_pending(key) else None
        if pending is not None and pending.stage != d.stage:
            # its head moved on to a later stage: follow it
            return Forward(pending.stage, Role.BEHIND, 1, 0.0, first, seq=d.seq, requeues=d.requeues)
        waiting = self.parking.head_pending(key) or not self.parking.turn(key, d.seq)
        if waiting and d.requeues < MAX_REQUEUES:
            # its head (a behind record that failed and now leads) or an earlier parked record is
            # still queued in this or an earlier stage: wait at the end of this stage
            return Forward(d.stage, Role.BEHIND, 1, REQUEUE_S, first, seq=d.seq, requeues=d.requeues + 1)
        if waiting:
            self.parking.head_done(key)
        was_parked = self.parking.state(key) is not None
        # K stays parked meanwhile: events of K arriving now queue behind it
        return Attempt(1, None, After.BEHIND_DONE if was_parked else After.NOTHING, lost_head=waiting)

    def attempted(self, d: Delivery, action: Attempt, finished: bool) -> None:
        """Bookkeeping after ``action`` ran; ``finished``: handled, skipped or dead-lettered
        (False: it failed and now waits in a stage as its key's head)."""
        if d.key is None:
            return
        if action.after is After.HEAD_DONE and finished:
            self.parking.head_done(d.key)
        elif action.after is After.BEHIND_DONE:
            self.parking.behind_done(d.key, d.seq)

    def failed(self, d: Delivery, number: int, exc: BaseException, now: datetime,
               first_failure: datetime | None) -> Forward | DeadLetter:
        """Attempt ``number`` raised ``exc``: the next stage (its key parked behind it) or the
        dead-letter topic (terminal, ladder exhausted, or no key to keep order by)."""
        step = self.policy.next_step(number, exc)
        if step.verdict is Verdict.DEAD_LETTER or d.key is None:
            return DeadLetter(_reason(exc, step.verdict, number))
        assert step.stage is not None  # a RETRY step names its stage
        self.parking.park_head(d.key, d.event_id, step.stage)
        return Forward(step.stage, Role.HEAD, number + 1, step.delay_s, first_failure or now)


def _reason(exc: BaseException, verdict: Verdict, number: int) -> str:
    """The dead-letter reason label: rejected (the handler said so), exhausted (retriable, but the
    ladder is used up) or handler (a terminal error, or a keyless record that cannot be parked)."""
    if isinstance(exc, Reject):
        return "rejected"
    if verdict is Verdict.DEAD_LETTER and number > 1 and classify(exc):
        return "exhausted"
    return "handler"
