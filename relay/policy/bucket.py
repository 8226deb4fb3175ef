"""The throttle decision's token bucket as reservations (GCRA), pure arithmetic.

A throttled action is never refused and retried: it reserves the bucket's next free slot and
runs then. The bucket is one number, ``tat`` (the theoretical arrival time of the next action at
the steady rate); with emission interval ``T = 1 / rate`` and tolerance ``(burst - 1) * T``, a
reservation at ``now`` gets the slot ``max(now, tat - tolerance)`` and moves ``tat`` to
``max(tat, now) + T``. So ``burst`` actions pass at once after a quiet spell, then one per ``T``;
reservations queue up fairly, in the order taken. The coordinator does the same in one
Postgres statement per reservation (``relay.saga.store.RESERVE``), shared across runs and
coordinators; this module is the rule that statement is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Slot:
    at: float   # when the action may run (>= now)
    tat: float  # the bucket afterwards


def reserve(tat: float | None, now: float, rate: float, burst: int) -> Slot:
    """The slot of one action in a bucket at ``tat`` (None: a new bucket, full) at ``now``."""
    if rate <= 0 or burst < 1:
        raise ValueError(f"rate = {rate!r}, burst = {burst!r}; expected rate > 0 and burst >= 1")
    interval = 1.0 / rate
    current = now if tat is None else tat
    return Slot(max(now, current - (burst - 1) * interval), max(current, now) + interval)
