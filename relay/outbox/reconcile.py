"""Recovery after a lost or dropped replication slot (``relay outbox reconcile``).

Stop the connector, drop the broken slot, clear Connect's stored offsets, create a fresh slot
(from here on nothing is missed), republish every outbox row committed since the last position
Kafka is known to have (minus a margin), then resume the connector. Rows in the overlap are
published twice; consumers are idempotent. Rows deleted in their own transaction
(``delete_after``) cannot be republished: the report says so.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

import psycopg

from relay.config import Settings
from relay.connect import ConnectClient
from relay.deps import connect_postgres
from relay.errors import ConnectError, RelayError
from relay.outbox.guardian import cdc_position
from relay.outbox.slot import slot_info


@dataclass
class ReconcileReport:
    since: datetime
    republished: int
    slot_recreated: bool
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "since": self.since.isoformat()}


def reconcile(settings: Settings, *, since: datetime | None = None, margin: timedelta = timedelta(seconds=60),
              progress: Callable[[str], None] = lambda _m: None) -> ReconcileReport:
    from relay.outbox.poller import republish

    t0 = time.monotonic()
    client = ConnectClient.for_settings(settings)
    name = settings.connector_name
    if since is None:
        position = cdc_position(client, name)
        if position is None:
            raise RelayError("no stored connector position to reconcile from: pass --since (a time before the "
                             "first event that may be missing)")
        since = position.committed_at - margin
    progress(f"stopping connector {name}")
    client.stop(name)
    with connect_postgres(settings.cdc_dsn) as conn:
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
    with connect_postgres(settings.dsn, autocommit=False) as conn:
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
