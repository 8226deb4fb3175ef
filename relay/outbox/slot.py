"""The replication slot Debezium streams from, as Postgres reports it.

``wal_status`` (Postgres): ``reserved``/``extended`` = fine; ``unreserved`` = about to be
invalidated by ``max_slot_wal_keep_size``; ``lost`` = invalidated, the WAL it needed is gone.
``retained_bytes`` is how much WAL the slot pins (what fills the disk when the relay is down).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import psycopg

SLOT_QUERY = """
SELECT active, active_pid, restart_lsn::text, confirmed_flush_lsn::text, wal_status,
       pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained_bytes,
       safe_wal_size
FROM pg_replication_slots WHERE slot_name = %s
"""


@dataclass(frozen=True)
class SlotInfo:
    name: str
    exists: bool
    active: bool = False
    active_pid: int | None = None
    restart_lsn: str | None = None
    confirmed_flush_lsn: str | None = None
    wal_status: str | None = None
    retained_bytes: int | None = None
    safe_wal_size: int | None = None

    @property
    def healthy(self) -> bool:
        return self.exists and self.wal_status in ("reserved", "extended")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "healthy": self.healthy}


def slot_info(conn: psycopg.Connection, name: str) -> SlotInfo:
    row = conn.execute(SLOT_QUERY, (name,)).fetchone()
    if row is None:
        return SlotInfo(name, exists=False)
    return SlotInfo(name, True, *row)
