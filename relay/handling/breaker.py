"""Back-pressure for a consumer: a circuit breaker over a handler's downstream (the bound on
records in flight per partition is relay.consume.lanes).

Pure logic (no I/O, injectable clock), shared by the Faust agents and unit-tested on its own.

Contract with the consumer (one ``CircuitBreaker`` per source partition, or per handler downstream):
- before taking a record, ask ``allow()``. When it is False the consumer *pauses* the partition:
  no record is taken, none is lost or skipped, the committed offset does not advance. It checks
  again after ``retry_after_s()``.
- when ``allow()`` is True again after an open period, exactly one record is taken: the probe.
  The consumer reports its outcome with ``record_success()`` or ``record_failure(retriable)``.
- per-key order is unaffected: records are only delayed, never skipped or reordered.
- only *retriable* failures (``relay.handling.retry.classify``) say the downstream is unwell.
  Terminal failures (validation, decode) are about the record, so they neither count toward
  opening nor break a streak of retriable failures; those records go to the dead-letter topic.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Callable

from relay.errors import ConfigError


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class CircuitBreaker:
    """Opens after ``failure_threshold`` consecutive retriable failures; stays open
    ``open_for_s`` seconds, then lets one probe through (HALF_OPEN). A successful probe closes it;
    a retriable failure of the probe reopens it for twice as long as before, at most
    ``max_open_for_s``. Any success closes it and resets the open duration to ``open_for_s``.

    - ``allow()``: CLOSED -> True. OPEN -> False until the open period has elapsed, then it moves
      to HALF_OPEN and returns True once (the probe). HALF_OPEN with the probe outstanding ->
      False. A probe that fails terminally says nothing about the downstream: the breaker stays
      HALF_OPEN and the next ``allow()`` admits another probe.
    - outcomes of records admitted before the breaker opened may arrive while it is OPEN: a
      success closes it (the downstream answered), a failure changes nothing (already open).
    - ``state`` is a plain read: an elapsed OPEN period shows as OPEN until ``allow()`` is asked.
    - ``opened_total`` counts every transition into OPEN, re-openings after a failed probe included.
    """

    failure_threshold: int = 5
    open_for_s: float = 5.0
    max_open_for_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    opened_total: int = field(default=0, init=False)
    _state: BreakerState = field(default=BreakerState.CLOSED, init=False, repr=False)
    _failures: int = field(default=0, init=False, repr=False)
    _open_for: float = field(default=0.0, init=False, repr=False)
    _opened_at: float = field(default=0.0, init=False, repr=False)
    _probe_out: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        problems = []
        if not _is_int(self.failure_threshold) or self.failure_threshold < 1:
            problems.append(f"circuit breaker failure_threshold = {self.failure_threshold!r}; expected an integer >= 1")
        open_ok = _is_number(self.open_for_s) and math.isfinite(self.open_for_s) and self.open_for_s > 0
        if not open_ok:
            problems.append(f"circuit breaker open_for_s = {self.open_for_s!r}; "
                            "expected a finite number of seconds > 0")
        if not (_is_number(self.max_open_for_s) and math.isfinite(self.max_open_for_s) and self.max_open_for_s > 0):
            problems.append(f"circuit breaker max_open_for_s = {self.max_open_for_s!r}; "
                            "expected a finite number of seconds > 0 and >= open_for_s")
        elif open_ok and self.max_open_for_s < self.open_for_s:
            problems.append(f"circuit breaker max_open_for_s = {self.max_open_for_s!r}; "
                            f"expected a number of seconds >= open_for_s ({self.open_for_s!r})")
        if problems:
            raise ConfigError(problems)
        self._open_for = float(self.open_for_s)

    @property
    def state(self) -> BreakerState:
        return self._state

    def allow(self) -> bool:
        """May the consumer take the next record? See the class docstring."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            if self.clock() < self._opened_at + self._open_for:
                return False
            self._state = BreakerState.HALF_OPEN
        if self._probe_out:
            return False
        self._probe_out = True
        return True

    def record_success(self) -> None:
        """The downstream answered: close, forget the failure streak and the backoff."""
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._open_for = float(self.open_for_s)
        self._probe_out = False

    def record_failure(self, retriable: bool) -> None:
        """A handler failed. Only retriable failures count (see the module docstring)."""
        if self._state is BreakerState.HALF_OPEN:
            if retriable:
                self._open(min(self._open_for * 2, self.max_open_for_s))
            else:
                self._probe_out = False  # no verdict on the downstream: admit another probe
            return
        if self._state is BreakerState.OPEN or not retriable:
            return
        self._failures += 1
        if self._failures >= self.failure_threshold:
            self._open(float(self.open_for_s))

    def record_no_verdict(self) -> None:
        """A record finished without calling the downstream (duplicate, parked, undecodable): if
        it was the probe, admit another one."""
        if self._state is BreakerState.HALF_OPEN:
            self._probe_out = False

    def retry_after_s(self) -> float:
        """Seconds until ``allow()`` admits a probe: 0 when CLOSED or HALF_OPEN (a probe is due
        now, or one is outstanding and only its outcome, not time, changes the answer)."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self._open_for - self.clock())

    def _open(self, duration: float) -> None:
        self._state = BreakerState.OPEN
        self._open_for = duration
        self._opened_at = self.clock()
        self._probe_out = False
        self._failures = 0
        self.opened_total += 1


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
