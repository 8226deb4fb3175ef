"""The throttle decision's token bucket, as pure arithmetic over a stored (tokens, at) pair.

The gate keeps one bucket per key across runs (and coordinators) wherever it stores them; this
module only says what a take does: refill at ``rate`` tokens a second up to ``burst``, then take
one if there is one. A refused take says how long until the next token.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BucketState:
    tokens: float
    at: float  # when ``tokens`` was counted (seconds, any monotonic clock shared by the takers)


@dataclass(frozen=True)
class Take:
    allowed: bool
    state: BucketState
    wait_s: float  # refused: until a token is there (0 when allowed)


def take(state: BucketState | None, now: float, rate: float, burst: int) -> Take:
    """One token from a bucket that was ``state`` (None: new, full) at ``now``."""
    if rate <= 0 or burst < 1:
        raise ValueError(f"rate = {rate!r}, burst = {burst!r}; expected rate > 0 and burst >= 1")
    tokens = float(burst) if state is None else min(float(burst), state.tokens + max(0.0, now - state.at) * rate)
    if tokens >= 1.0:
        return Take(True, BucketState(tokens - 1.0, now), 0.0)
    return Take(False, BucketState(tokens, now), (1.0 - tokens) / rate)
