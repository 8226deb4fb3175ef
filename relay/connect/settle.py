"""Truthful connector state: a task counts as working only after it stayed RUNNING, and read its
source, through a settle period; a failure is reported by its root cause.

Why: a task that dies on a poison record is RUNNING again right after a restart and dies 0.7 s
later; with exactly-once source support Connect then keeps saying RUNNING for up to 30 s while it
closes the task's transactional producer (the replication slot may stay active all that time,
seen here). What does not lie is progress: a working Debezium task commits a new source offset
at least every heartbeat interval (5 s; the heartbeat is a transactional WAL message), a dead one
never again. So success is: RUNNING for the settle period *and* the stored offset moved twice
(see OffsetProgress).
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable

from relay.connect.client import ConnectClient, first_failure
from relay.errors import ConnectError

# hints for root causes an operator meets with the outbox connector
_HINTS = (
    ("RecordTooLargeException", "an outbox row is larger than a producer or topic limit accepts: raise the "
     "limit that refused it (RELAY_MAX_EVENT_BYTES, or a topic's max.message.bytes lowered by hand) and run "
     "`relay outbox unblock --retry`, or move the row aside with `relay outbox unblock --dead-letter`"),
    ("collides with existing topic", "two aggregate types map to one Kafka topic name ('.' and '_' "
     "collide): move the row aside with `relay outbox unblock --dead-letter`"),
    ("no longer available on the server", "the slot lost WAL the connector needs: `relay outbox reconcile`"),
)


def root_cause(trace: str | None, *, hint: bool = True) -> str:
    """The deepest ``Caused by:`` of a Java stack trace (else its first line), plus a hint."""
    text = (trace or "").strip()
    if not text:
        return "(Connect gave no trace)"
    causes = re.findall(r"^Caused by: (.+)$", text, flags=re.MULTILINE)
    cause = causes[-1].strip() if causes else text.splitlines()[0].strip()
    first = text.splitlines()[0].strip()
    line = cause if cause == first else f"{cause} (reported as: {first})"
    advice = next((h for marker, h in _HINTS if marker in text), None) if hint else None
    return f"{line} -> {advice}" if advice else line


class OffsetProgress:
    """Latches True once the connector's stored source offset took ``moves`` new values after
    creation (taken before the action whose outcome is awaited); None while offsets cannot be read.

    Two moves, not one: after a restart a task may commit the batch *before* a poison record and
    die on the next poll (seen in CI), so one move proves nothing; a task that committed again
    after that got past its first batch. When the offset cannot be read at creation, the first
    value read later is the baseline (a value read after the action may already be new)."""

    def __init__(self, client: ConnectClient, name: str, *, moves: int = 2) -> None:
        self.client, self.name, self.moves = client, name, moves
        self.baseline = self._read()
        self.seen = 0

    def _read(self) -> Any:
        try:
            return self.client.offsets(self.name)
        except ConnectError:
            return None

    def __call__(self) -> bool | None:
        if self.seen < self.moves:
            now = self._read()
            if now is None:
                return None
            if self.baseline is None:
                self.baseline = now
            elif now and now != self.baseline:
                self.baseline, self.seen = now, self.seen + 1
        return self.seen >= self.moves


class PastRow:
    """True once the connector's stored source offset is at or past WAL position ``lsn`` (the row
    a failed task stopped on): only then did the task get past it. False until then, also while
    offsets cannot be read: a known blocked row is passed only when that is seen. Offset moves
    alone prove nothing here: the batches before that row commit and move the offset, then the
    task dies on the row again (seen in CI, twice)."""

    def __init__(self, client: ConnectClient, name: str, lsn: int) -> None:
        self.client, self.name, self.lsn = client, name, lsn
        self.passed = False

    def __call__(self) -> bool:
        if not self.passed:
            try:
                entries = self.client.offsets(self.name)
            except ConnectError:
                return False
            offset = entries[0].get("offset", {}) if entries else {}
            self.passed = max(_lsn(offset, "lsn_proc"), _lsn(offset, "lsn")) >= self.lsn
        return self.passed


def _lsn(offset: Any, key: str) -> int:
    value = offset.get(key) if isinstance(offset, dict) else None
    return int(value) if isinstance(value, (int, str)) and str(value).isdigit() else 0


def all_of(*readings: Callable[[], bool | None] | None) -> Callable[[], bool | None] | None:
    """A reading that is True when every given one is (None when one cannot tell)."""
    given = [r for r in readings if r is not None]
    if not given:
        return None

    def reading() -> bool | None:
        results = [r() for r in given]
        if any(r is False for r in results):
            return False
        return None if any(r is None for r in results) else True
    return reading


def progress_timeout(timeout_s: float, *, settle_s: float, heartbeat_ms: int) -> float:
    """``timeout_s``, or longer when proving progress needs it: on an idle outbox only heartbeats
    move the stored offset, and :class:`OffsetProgress` waits for two moves."""
    return max(timeout_s, settle_s + 2.5 * heartbeat_ms / 1000)


def wait_stable(client: ConnectClient, name: str, *, settle_s: float, timeout_s: float,
                reading: Callable[[], bool | None] | None = None, poll_s: float = 0.25) -> dict[str, Any]:
    """Return the status once the connector and every task were RUNNING for ``settle_s`` and
    ``reading()`` (e.g. :class:`OffsetProgress`) says the task works (None: cannot tell).

    Raises ConnectError (not retriable) naming the root cause as soon as Connect reports FAILED,
    and on ``timeout_s`` says what it saw last (e.g. RUNNING but no progress).
    """
    start = time.monotonic()
    deadline = start + timeout_s
    stable_since: float | None = None
    last: dict[str, Any] = {}
    while True:
        st = client.state(name)
        failed = first_failure(st)
        if failed:
            raise ConnectError(f"connector {name}: {failed[0]} FAILED: {root_cause(failed[1])}", retriable=False)
        reads = reading() if reading is not None else None
        now = time.monotonic()
        if st["ok"] and st["tasks"]:
            stable_since = stable_since or now
            if now - stable_since >= settle_s and reads is not False:
                return st
        else:
            stable_since = None
        last = {"state": st, "reads": reads}
        if now >= deadline:
            raise ConnectError(_not_stable(name, last, timeout_s), retriable=True)
        time.sleep(poll_s)


def restart_and_wait(client: ConnectClient, name: str, *, only_failed: bool, settle_s: float, timeout_s: float,
                     reading: Callable[[], bool | None] | None = None) -> tuple[list[str], dict[str, Any]]:
    """Restart (failed) instances, let the restart begin (Connect's status may show the old FAILED
    for a moment), then :func:`wait_stable`; returns (instances restarted, status)."""
    restarted = request_restart(client, name, only_failed=only_failed, timeout_s=timeout_s)
    return restarted, wait_stable(client, name, settle_s=settle_s, timeout_s=timeout_s, reading=reading)


def request_restart(client: ConnectClient, name: str, *, only_failed: bool, timeout_s: float) -> list[str]:
    """Ask Connect to restart and wait until the restart has begun; the instances restarted."""
    from relay.connect.client import restarting

    restarted = restarting(client.restart(name, include_tasks=True, only_failed=only_failed))
    if restarted:
        client.wait_settled(name, timeout_s, failed_grace_s=2.0)
    return restarted


def _not_stable(name: str, last: dict[str, Any], timeout_s: float) -> str:
    st = last["state"]
    states = f"connector {st['connector']['state']}, tasks {[t['state'] for t in st['tasks']]}"
    if st["ok"] and last["reads"] is False:
        return (f"connector {name} says RUNNING but its task made no progress in {timeout_s:.0f} s (stored "
                f"offset unchanged; {states}): it most likely failed and Connect has not reported it yet "
                "(it can take 30 s); see `relay outbox stats`")
    return f"connector {name} did not stay RUNNING for the settle period within {timeout_s:.0f} s ({states})"
