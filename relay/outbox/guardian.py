"""Slot guardian: the health of the publishing half, and the recovery path after a slot is lost.

``check`` gathers what an operator needs (outbox backlog, the replication slot as Postgres sees
it, the connector and its stored position) and turns known failure modes into ``Problem``s that
say what happened, which events may be missing and what to do.

The failure that matters most is a *gap*: the slot was dropped, or invalidated by
``max_slot_wal_keep_size`` (``wal_status = lost``), while Connect still holds an offset in the old
slot's WAL. Debezium would otherwise create a new slot at the current position and silently skip
everything committed in between; with ``offset.mismatch.strategy=trust_offset`` its task fails
instead, and ``check`` reports ``gap``.

The recovery is ``relay outbox reconcile`` (relay.outbox.reconcile).

``check`` never raises for a dependency that is down or refuses us: Postgres, Kafka Connect and
Kafka are probed with short timeouts and each failure becomes a problem naming that dependency
(Connect's offsets endpoint blocks while the broker is down, so the broker is probed directly
rather than blamed on Connect). The backlog is reported in the active relay's terms: in CDC mode
rows committed after the connector's stored position; with the polling relay, unmarked rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

from relay.config import Settings
from relay.connect import ConnectClient
from relay.connect.settle import root_cause
from relay.deps import connect_postgres, probe_kafka
from relay.errors import RelayError
from relay.outbox.slot import SlotInfo, slot_info


class ProblemCode(StrEnum):
    GAP = "gap"  # events may be missing from Kafka: run `relay outbox reconcile`
    SLOT_UNRESERVED = "slot_unreserved"  # about to be invalidated by max_slot_wal_keep_size
    TASK_FAILED = "task_failed"
    CONNECTOR_ABSENT = "connector_absent"
    NOT_STREAMING = "not_streaming"  # connector says RUNNING but nobody reads the slot
    TERMINAL_ROWS = "terminal_rows"  # polling relay gave up on rows; their aggregates are held
    CONNECTOR_PAUSED = "connector_paused"  # paused or stopped while rows wait: nothing is published
    POSTGRES_UNREACHABLE = "postgres_unreachable"  # or refusing our credentials
    CONNECT_UNREACHABLE = "connect_unreachable"
    KAFKA_UNREACHABLE = "kafka_unreachable"


@dataclass(frozen=True)
class Problem:
    code: ProblemCode
    message: str
    action: str


@dataclass(frozen=True)
class CdcPosition:
    """Connect's stored source offset: the last WAL position (and its commit time) in Kafka."""

    lsn: int
    committed_at: datetime

    @property
    def lsn_text(self) -> str:
        return f"{self.lsn >> 32:X}/{self.lsn & 0xFFFFFFFF:X}"


@dataclass
class Health:
    outbox: dict[str, Any]  # {} when Postgres could not be asked
    slot: SlotInfo | None  # None when Postgres could not be asked
    connector: dict[str, Any] | None  # None: not registered (or Connect could not be asked)
    position: CdcPosition | None
    problems: list[Problem] = field(default_factory=list)
    down: dict[str, str] = field(default_factory=dict)  # dependency -> why it could not be asked
    blocked: str | None = None  # the row a failed task stopped on, described
    checked_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def mode(self) -> str:
        """``cdc`` when the outbox connector is registered, else ``poller``."""
        return "cdc" if self.connector is not None or "connect" in self.down else "poller"

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "mode": self.mode, "down": self.down, "blocked": self.blocked, "outbox": self.outbox,
            "slot": None if self.slot is None else self.slot.as_dict(), "connector": self.connector,
            "position": None if self.position is None else {
                "lsn": self.position.lsn_text, "committed_at": self.position.committed_at.isoformat()},
            "problems": [asdict(p) for p in self.problems],
        }


OUTBOX_QUERY = """
SELECT count(*) FILTER (WHERE published_at IS NULL AND failed_at IS NULL),
       extract(epoch FROM now() - min(created_at) FILTER (WHERE published_at IS NULL AND failed_at IS NULL)),
       count(*) FILTER (WHERE failed_at IS NOT NULL AND published_at IS NULL),
       count(*) FILTER (WHERE created_at > %(since)s),
       extract(epoch FROM now() - min(created_at) FILTER (WHERE created_at > %(since)s))
FROM (SELECT created_at, published_at, failed_at FROM outbox
      UNION ALL SELECT created_at, published_at, failed_at FROM outbox_avro) o
"""


def cdc_position(client: ConnectClient, name: str) -> CdcPosition | None:
    for entry in client.offsets(name):
        offset = entry.get("offset") or {}
        if "lsn" in offset and "ts_usec" in offset:
            ts = datetime.fromtimestamp(int(offset["ts_usec"]) / 1e6, tz=timezone.utc)
            return CdcPosition(int(offset["lsn"]), ts)
    return None


def check(settings: Settings, timeout_s: float = 4.0) -> Health:
    """Gather the facts (each dependency asked once, briefly) and diagnose them; never raises for
    an unreachable or misconfigured dependency: that is a problem in the result."""
    down: dict[str, str] = {}
    kafka = probe_kafka(settings, timeout_s=min(timeout_s, 3.0))
    if kafka is not None:
        down["kafka"] = str(kafka)
    client = ConnectClient.for_settings(settings, timeout_s=timeout_s)
    status, position = None, None
    try:
        status = client.status(settings.connector_name)
        if status and kafka is None:  # the offsets endpoint blocks while the broker is down
            position = cdc_position(client, settings.connector_name)
    except RelayError as exc:
        down["connect"] = str(exc)
    slot, outbox = None, {}
    try:
        with connect_postgres(settings.dsn) as conn:
            slot = slot_info(conn, settings.slot_name)
            outbox = backlog(conn, position, cdc=status is not None or "connect" in down)
    except RelayError as exc:
        down["postgres"] = str(exc)
    health = Health(outbox, slot, status, position, down=down)
    trace = None if status is None else _failed_trace(status)
    if trace is not None and not down and not _is_gap_failure(trace) and slot is not None and slot.exists:
        health.blocked = _blocked_row(settings)
    health.problems = diagnose(health, settings)
    return health


def _blocked_row(settings: Settings) -> str | None:
    """Which row a failed task stopped on, when the slot can be read now (best effort)."""
    from relay.outbox.unblock import Unblocker

    try:
        found = Unblocker(settings).locate()
    except RelayError as exc:
        return f"(blocked row not located: {exc})"
    return None if found is None else found.describe()


def backlog(conn: Any, position: CdcPosition | None, *, cdc: bool) -> dict[str, Any]:
    """What waits to be published, in the active relay's terms (CDC: rows committed after the
    connector's stored position; polling relay: rows not marked published)."""
    epoch = datetime.fromtimestamp(0, tz=timezone.utc)
    waiting, oldest, terminal, after, oldest_after = conn.execute(
        OUTBOX_QUERY, {"since": position.committed_at if position else epoch}).fetchone()
    if cdc:
        rows = after if position else None
        age = _round(oldest_after) if position else None
        return {"mode": "cdc", "backlog_rows": rows, "backlog_oldest_age_s": age, "terminal_rows": 0,
                "rows_after_cdc_position": rows, "oldest_after_cdc_position_age_s": age}
    return {"mode": "poller", "backlog_rows": waiting, "backlog_oldest_age_s": _round(oldest),
            "terminal_rows": terminal, "unpublished_rows": waiting, "oldest_unpublished_age_s": _round(oldest)}


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


_DOWN = {
    "postgres": (ProblemCode.POSTGRES_UNREACHABLE, "start Postgres or fix RELAY_PG_DSN / RELAY_PG_PASSWORD; "
                 "committed events wait in the outbox and the slot, nothing is lost"),
    "kafka": (ProblemCode.KAFKA_UNREACHABLE, "start the broker or fix RELAY_KAFKA_BOOTSTRAP; the connector "
              "resumes by itself once it is back, nothing is lost"),
    "connect": (ProblemCode.CONNECT_UNREACHABLE, "start Kafka Connect or fix RELAY_CONNECT_URL; events wait in "
                "the slot, nothing is lost"),
}


def diagnose(h: Health, settings: Settings) -> list[Problem]:
    """Pure: known failure modes from gathered facts (unit-tested without I/O)."""
    problems = [Problem(_DOWN[dep][0], why, _DOWN[dep][1]) for dep, why in h.down.items()]
    if h.slot is not None:
        problems += _slot_problems(h, h.slot, settings)
    if "connect" not in h.down:
        problems += _connector_problems(h, settings, gap=any(p.code == ProblemCode.GAP for p in problems))
    if h.outbox.get("terminal_rows"):
        problems.append(Problem(ProblemCode.TERMINAL_ROWS, f"{h.outbox['terminal_rows']} outbox rows failed "
                                "permanently in the polling relay; later events of their aggregates are held",
                                "inspect last_error in the outbox table, fix, then clear failed_at"))
    return problems


def _slot_problems(h: Health, slot: SlotInfo, settings: Settings) -> list[Problem]:
    pos, problems = h.position, []
    since = f"since {pos.committed_at.isoformat()} (LSN {pos.lsn_text})" if pos else "since the connector last ran"
    reconcile = ("run `relay outbox reconcile`: it stops the connector, creates a fresh slot, republishes the "
                 f"outbox rows committed {since} (consumers drop the duplicates) and resumes")
    if pos is not None and not slot.exists:
        problems.append(Problem(ProblemCode.GAP, f"replication slot {slot.name!r} is missing but connector "
                                f"{settings.connector_name!r} holds an offset at LSN {pos.lsn_text}: events committed "
                                f"{since} may not be in Kafka", reconcile))
    elif slot.exists and slot.wal_status == "lost":
        problems.append(Problem(ProblemCode.GAP, f"replication slot {slot.name!r} was invalidated (wal_status=lost, "
                                "max_slot_wal_keep_size exceeded): the WAL it needed is gone and events committed "
                                f"{since} may not be in Kafka", reconcile))
    elif h.connector and _is_gap_failure(_failed_trace(h.connector)):
        ahead = f" (slot confirmed {slot.confirmed_flush_lsn}, connector offset {pos.lsn_text})" if pos else ""
        problems.append(Problem(ProblemCode.GAP, f"the connector task failed because the WAL it must resume from is "
                                f"no longer available in slot {slot.name!r}{ahead}: the slot was recreated or moved "
                                f"and events committed {since} may not be in Kafka", reconcile))
    if slot.exists and slot.wal_status == "unreserved":
        problems.append(Problem(ProblemCode.SLOT_UNRESERVED, f"slot {slot.name!r} retains {slot.retained_bytes} bytes "
                                "of WAL and is about to be invalidated by max_slot_wal_keep_size",
                                "get the connector streaming again now (`relay connectors status`)"))
    return problems


def _connector_problems(h: Health, settings: Settings, *, gap: bool) -> list[Problem]:
    if h.connector is None:
        return [Problem(ProblemCode.CONNECTOR_ABSENT, f"connector {settings.connector_name!r} is not registered",
                        "run `relay connectors apply`")]
    state, slot = h.connector["connector"]["state"], h.slot
    trace = _failed_trace(h.connector)
    if trace is not None:
        if gap:
            return []
        row = f" Stopped on {h.blocked}." if h.blocked else ""
        return [Problem(ProblemCode.TASK_FAILED, f"connector task FAILED: {root_cause(trace)}; every later "
                        f"outbox row waits behind it.{row}", "fix the cause and run `relay outbox unblock --retry` "
                        "(publishes it, order kept), or `relay outbox unblock --dead-letter` (moves it to outbox.dlq "
                        "and continues)")]
    if state in ("PAUSED", "STOPPED") and h.outbox.get("backlog_rows"):
        age = h.outbox.get("backlog_oldest_age_s")
        return [Problem(ProblemCode.CONNECTOR_PAUSED, f"connector {settings.connector_name!r} is {state} while "
                        f"{h.outbox['backlog_rows']} rows wait (oldest {age} s); nothing is being published",
                        "`relay connectors resume` when intended")]
    stalled = _stalled_for(h, settings)
    if state == "RUNNING" and stalled is not None:
        return [Problem(ProblemCode.NOT_STREAMING, f"connector says RUNNING but has stored no new position for "
                        f"{stalled:.0f} s while {h.outbox['backlog_rows']} rows wait (heartbeats move it every "
                        f"{settings.heartbeat_interval_ms / 1000:g} s): its task most likely failed on a row; Connect "
                        f"reports FAILED once the task's transaction times out "
                        f"({settings.transaction_timeout_ms / 1000:g} s)",
                        "run `relay outbox stats` again in a few seconds for the row and the cause")]
    if state == "RUNNING" and slot is not None and slot.exists and not slot.active and "kafka" not in h.down:
        return [Problem(ProblemCode.NOT_STREAMING, f"connector says RUNNING but slot {slot.name!r} has no reader "
                        "(a task that just failed is reported RUNNING for up to 30 s)",
                        "wait a few seconds and look again; if it persists `relay connectors restart --all`")]
    return []


def _stalled_for(h: Health, settings: Settings) -> float | None:
    """Seconds the stored position has not moved while rows wait, when that is longer than three
    heartbeats (a working task stores a new position at least every heartbeat); else None."""
    if h.position is None or not settings.heartbeat_interval_ms or not h.outbox.get("backlog_rows"):
        return None
    age = (h.checked_at - h.position.committed_at).total_seconds()
    return age if age > 3 * settings.heartbeat_interval_ms / 1000 else None


# what Debezium says when its stored offset points at WAL the slot no longer has
_GAP_MARKERS = ("no longer available on the server", "slot is ahead", "offset mismatch")


def _is_gap_failure(trace: str | None) -> bool:
    return trace is not None and any(marker in trace for marker in _GAP_MARKERS)


def _failed_trace(connector: dict[str, Any]) -> str | None:
    if connector["connector"]["state"] == "FAILED":
        trace: str = connector["connector"].get("trace", "")
        return trace
    for task in connector.get("tasks", []):
        if task["state"] == "FAILED":
            task_trace: str = task.get("trace", "")
            return task_trace
    return None


