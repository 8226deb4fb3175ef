"""Slot guardian: the health of the publishing half, and the recovery path after a slot is lost.

``check`` gathers what an operator needs (outbox backlog, the replication slot as Postgres sees
it, the connector and its stored position) and turns known failure modes into ``Problem``s that
say what happened, which events may be missing and what to do.

The failure that matters most is a *gap*: the slot was dropped, or invalidated by
``max_slot_wal_keep_size`` (``wal_status = lost``), while Connect still holds an offset in the old
slot's WAL. Debezium would otherwise create a new slot at the current position and silently skip
everything committed in between; with ``offset.mismatch.strategy=trust_offset`` its task fails
instead, and ``check`` reports ``gap``.

``reconcile`` is the recovery: stop the connector, drop the broken slot, clear Connect's stored
offsets, create a fresh slot (from here on nothing is missed), republish every outbox row
committed since the last position Kafka is known to have (minus a margin), then resume the
connector. Rows in the overlap are published twice; consumers are idempotent. Rows deleted in
their own transaction (``delete_after``) cannot be republished: the report says so.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any, Callable

import psycopg

from relay.config import Settings
from relay.connect import ConnectClient
from relay.errors import ConnectError, RelayError
from relay.outbox.slot import SlotInfo, slot_info


class ProblemCode(StrEnum):
    GAP = "gap"  # events may be missing from Kafka: run `relay outbox reconcile`
    SLOT_UNRESERVED = "slot_unreserved"  # about to be invalidated by max_slot_wal_keep_size
    TASK_FAILED = "task_failed"
    CONNECTOR_ABSENT = "connector_absent"
    NOT_STREAMING = "not_streaming"  # connector says RUNNING but nobody reads the slot
    TERMINAL_ROWS = "terminal_rows"  # polling relay gave up on rows; their aggregates are held


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
    outbox: dict[str, Any]
    slot: SlotInfo
    connector: dict[str, Any] | None
    position: CdcPosition | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "outbox": self.outbox, "slot": self.slot.as_dict(), "connector": self.connector,
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


def check(settings: Settings) -> Health:
    client = ConnectClient(settings.connect_rest_url)
    status = client.status(settings.connector_name)
    position = cdc_position(client, settings.connector_name) if status else None
    epoch = datetime.fromtimestamp(0, tz=timezone.utc)
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        slot = slot_info(conn, settings.slot_name)
        waiting, oldest, terminal, after, oldest_after = conn.execute(
            OUTBOX_QUERY, {"since": position.committed_at if position else epoch}).fetchone()
    outbox = {
        "unpublished_rows": waiting, "oldest_unpublished_age_s": _round(oldest), "terminal_rows": terminal,
        "rows_after_cdc_position": after if position else None,
        "oldest_after_cdc_position_age_s": _round(oldest_after) if position else None,
    }
    health = Health(outbox, slot, status, position)
    health.problems = diagnose(health, settings)
    return health


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


def diagnose(h: Health, settings: Settings) -> list[Problem]:
    """Pure: known failure modes from gathered facts (unit-tested without I/O)."""
    problems = []
    slot, pos = h.slot, h.position
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
                                f"no longer available in slot {slot.name!r}{ahead}: the slot was recreated or moved and "
                                f"events committed {since} may not be in Kafka", reconcile))
    if slot.exists and slot.wal_status == "unreserved":
        problems.append(Problem(ProblemCode.SLOT_UNRESERVED, f"slot {slot.name!r} retains {slot.retained_bytes} bytes "
                                "of WAL and is about to be invalidated by max_slot_wal_keep_size",
                                "get the connector streaming again now (`relay connectors status`)"))
    if h.connector is None:
        problems.append(Problem(ProblemCode.CONNECTOR_ABSENT, f"connector {settings.connector_name!r} is not "
                                "registered", "run `relay connectors apply`"))
    else:
        trace = _failed_trace(h.connector)
        if trace is not None and not any(p.code == ProblemCode.GAP for p in problems):
            first = trace.strip().splitlines()[0] if trace.strip() else "(no trace)"
            problems.append(Problem(ProblemCode.TASK_FAILED, f"connector task FAILED: {first}",
                                    "fix the cause, then `relay connectors restart`"))
        elif h.connector["connector"]["state"] == "RUNNING" and slot.exists and not slot.active:
            problems.append(Problem(ProblemCode.NOT_STREAMING, f"connector says RUNNING but slot {slot.name!r} has "
                                    "no reader", "wait a few seconds; if it persists `relay connectors restart --all`"))
    if h.outbox.get("terminal_rows"):
        problems.append(Problem(ProblemCode.TERMINAL_ROWS, f"{h.outbox['terminal_rows']} outbox rows failed "
                                "permanently in the polling relay; later events of their aggregates are held",
                                "inspect last_error in the outbox table, fix, then clear failed_at"))
    return problems


# what Debezium says when its stored offset points at WAL the slot no longer has
_GAP_MARKERS = ("no longer available on the server", "slot is ahead", "offset mismatch")


def _is_gap_failure(trace: str | None) -> bool:
    return trace is not None and any(marker in trace for marker in _GAP_MARKERS)


def _failed_trace(connector: dict[str, Any]) -> str | None:
    if connector["connector"]["state"] == "FAILED":
        return connector["connector"].get("trace", "")
    for task in connector.get("tasks", []):
        if task["state"] == "FAILED":
            return task.get("trace", "")
    return None


@dataclass
class ReconcileReport:
    since: datetime
    republished: int
    slot_recreated: bool
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "since": self.since.isoformat()}


def cdc_dsn(settings: Settings) -> str:
    """The replication role's DSN: it may drop and create slots, the application role may not."""
    host = settings.connector_pg_host or settings.host
    return (f"postgresql://{settings.pg_cdc_user}:{settings.pg_cdc_password.get_secret_value()}@{host}:{settings.pg_port}/"
            f"{settings.pg_database}")


def reconcile(settings: Settings, *, since: datetime | None = None, margin: timedelta = timedelta(seconds=60),
              progress: Callable[[str], None] = lambda _m: None) -> ReconcileReport:
    from relay.outbox.poller import republish

    t0 = time.monotonic()
    client = ConnectClient(settings.connect_rest_url)
    name = settings.connector_name
    if since is None:
        position = cdc_position(client, name)
        if position is None:
            raise RelayError("no stored connector position to reconcile from: pass --since (a time before the "
                             "first event that may be missing)")
        since = position.committed_at - margin
    progress(f"stopping connector {name}")
    client.stop(name)
    with psycopg.connect(cdc_dsn(settings), autocommit=True) as conn:
        _wait_inactive(conn, settings.slot_name)
        existed = slot_info(conn, settings.slot_name).exists
        if existed:
            progress(f"dropping slot {settings.slot_name}")
            conn.execute("SELECT pg_drop_replication_slot(%s)", (settings.slot_name,))
        progress("clearing the connector's stored offsets")
        client.reset_offsets(name)
        progress(f"creating slot {settings.slot_name}: from here on every commit is retained")
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (settings.slot_name,))
    progress(f"republishing outbox rows created since {since.isoformat()}")
    with psycopg.connect(settings.dsn) as conn:
        count = republish(settings, conn, since)
    progress(f"republished {count} events; resuming connector")
    client.resume(name)
    client.wait_running(name, 120)
    return ReconcileReport(since, count, existed, round(time.monotonic() - t0, 2))


def _wait_inactive(conn: psycopg.Connection, slot: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while slot_info(conn, slot).active:
        if time.monotonic() > deadline:
            raise ConnectError(f"slot {slot!r} still in use {timeout_s:.0f} s after stopping the connector")
        time.sleep(0.2)
