"""Failure policy of a consumer: which errors are retried, on which ladder, and when to give up.

Pure logic (no I/O), shared by the Faust agents and unit-tested on its own.

- ``classify`` decides retriable vs terminal, narrowly: our error tree's ``retriable`` flag;
  timeouts; connection errors (refused, reset, aborted, broken pipe), name-resolution failures and
  OS errors whose errno says the network or a resource is temporarily unavailable. Everything else
  is terminal and goes straight to the dead-letter topic: validation, decode and programming errors,
  and OS errors that will not heal by waiting (``PermissionError``, ``FileNotFoundError``, ...).
- a handler steers explicitly with ``relay.Retry(delay=...)`` (retriable; waits at least ``delay``
  in its stage, which holds up later records of that stage partition as long) and
  ``relay.Reject(reason)`` (terminal).
- ``RetryPolicy.next_step`` walks the ladder: attempt 1 failed -> stage 1 (first delay), ... the
  last stage failed -> dead letter. Each stage is a topic ``<topic>.retry.<n>`` with one fixed
  delay, so due times are non-decreasing within a partition and a stage consumer simply waits for
  the head record.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from dataclasses import dataclass
from enum import StrEnum

from relay.errors import DecodeError, RelayError, Retry


class Verdict(StrEnum):
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"


# errno values of OSErrors that waiting can cure (the network, or a resource briefly exhausted)
TRANSIENT_ERRNOS = frozenset({
    errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ENETDOWN, errno.ENETUNREACH, errno.ENETRESET,
    errno.EHOSTDOWN, errno.EHOSTUNREACH, errno.ETIMEDOUT, errno.ENOBUFS, errno.EMFILE, errno.ENFILE,
})


def classify(exc: BaseException) -> bool:
    """True when the same call may succeed later unchanged (retriable)."""
    if isinstance(exc, DecodeError):
        return False
    if isinstance(exc, RelayError):
        return exc.retriable
    if isinstance(exc, (TimeoutError, ConnectionError, asyncio.TimeoutError, socket.gaierror)):
        return True
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


@dataclass(frozen=True)
class Step:
    verdict: Verdict
    stage: int | None = None  # retry stage (1-based) when verdict is RETRY
    delay_s: float = 0.0


@dataclass(frozen=True)
class RetryPolicy:
    """``delays_s[i]`` is the wait before attempt ``i + 2`` (attempt 1 is the first delivery)."""

    delays_s: tuple[float, ...] = (1.0, 10.0, 60.0, 600.0)

    def __post_init__(self) -> None:
        if any(d < 0 for d in self.delays_s):
            raise ValueError(f"retry delays must be >= 0 seconds, got {self.delays_s}")

    @property
    def max_attempts(self) -> int:
        return len(self.delays_s) + 1

    def next_step(self, failed_attempt: int, exc: BaseException) -> Step:
        """What to do after attempt ``failed_attempt`` (1-based) raised ``exc``."""
        if failed_attempt < 1:
            raise ValueError(f"attempts count from 1, got {failed_attempt}")
        if not classify(exc) or failed_attempt > len(self.delays_s):
            return Step(Verdict.DEAD_LETTER)
        delay = self.delays_s[failed_attempt - 1]
        if isinstance(exc, Retry) and exc.delay is not None:  # at least what the handler asked for
            delay = max(delay, exc.delay)
        return Step(Verdict.RETRY, failed_attempt, delay)

    @classmethod
    def parse(cls, text: str) -> "RetryPolicy":
        """``"1s,10s,1m,10m"`` -> delays in seconds."""
        units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
        delays = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            for suffix in sorted(units, key=len, reverse=True):
                if part.endswith(suffix) and part[: -len(suffix)].replace(".", "", 1).isdigit():
                    delays.append(float(part[: -len(suffix)]) * units[suffix])
                    break
            else:
                raise ValueError(f"retry delay {part!r}: expected a number with ms, s, m or h, e.g. 10s")
        return cls(tuple(delays))
