"""What the replication slot still holds, decoded: the outbox inserts Debezium has not yet
confirmed, in the order it will stream them (commit order, then change order in a transaction).

``peek`` reads the slot without consuming it (``pg_logical_slot_peek_binary_changes`` with the
same pgoutput options Debezium uses), as the replication role, while no connector task holds the
slot. ``decode`` is pure: pgoutput protocol version 1 messages (Begin, Relation, Insert, Commit;
others are skipped) to :class:`WalInsert` records.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Iterable

import psycopg

from relay.deps import connect_postgres
from relay.errors import DatabaseError

PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
# the options Debezium streams with (messages too: a heartbeat is a transactional logical message,
# and its transaction's commit is what Debezium stores as lsn_commit)
PEEK = ("SELECT lsn::text, xid::text::bigint, data FROM pg_logical_slot_peek_binary_changes("
        "%s, NULL, %s, 'proto_version', '1', 'publication_names', %s, 'messages', 'true')")
UNIX_MINUS_PG_EPOCH_US = 946_684_800_000_000


def lsn_int(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def lsn_text(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


@dataclass(frozen=True)
class WalInsert:
    """One outbox insert in the slot: where it is in the WAL and the row as published."""

    lsn: int  # the change's own LSN (as Debezium stamps it: the slot's lsn column)
    xid: int
    commit_lsn: int  # its transaction's commit record start (pgoutput Begin's final LSN)
    committed_at: datetime
    table: str
    row: dict[str, str | None] = field(hash=False)
    index: int = 0  # place among its transaction's inserts (0 = first)
    prev_commit_end: int | None = None  # end of the commit streamed before its transaction, if peeked
    shares_lsn: bool = False  # another change has this LSN (multi-insert): it cannot be skipped alone

    @property
    def commit_ts_unix_us(self) -> int:
        delta = self.committed_at - PG_EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds + UNIX_MINUS_PG_EPOCH_US

    @property
    def event_id(self) -> str | None:
        return self.row.get("id")

    @property
    def aggregatetype(self) -> str | None:
        return self.row.get("aggregatetype")

    @property
    def size(self) -> int:
        """payload (as published) + aggregateid + headers: what the size guard counts."""
        payload = self.row.get("payload") or ""
        if self.table == "outbox_avro" and payload.startswith("\\x"):
            payload_bytes = (len(payload) - 2) // 2
        else:
            payload_bytes = len(payload.encode())
        return payload_bytes + len((self.row.get("aggregateid") or "").encode()) + len(
            (self.row.get("headers") or "").encode())

    def as_dict(self) -> dict[str, object]:
        return {"event_id": self.event_id, "aggregatetype": self.aggregatetype, "lsn": lsn_text(self.lsn),
                "commit_lsn": lsn_text(self.commit_lsn), "xid": self.xid, "table": self.table,
                "size_bytes": self.size, "committed_at": self.committed_at.isoformat()}


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return int(value)

    def string(self) -> str:
        end = self.data.index(b"\0", self.pos)
        text = self.data[self.pos:end].decode()
        self.pos = end + 1
        return text

    def tuple(self) -> list[str | None]:
        values: list[str | None] = []
        for _ in range(self.take(">h")):
            kind = chr(self.data[self.pos])
            self.pos += 1
            if kind == "t":
                size = self.take(">i")
                values.append(self.data[self.pos:self.pos + size].decode("utf-8", "replace"))
                self.pos += size
            else:  # 'n' null, 'u' unchanged toast (never in an insert)
                values.append(None)
        return values


def decode(messages: Iterable[tuple[int, int, bytes]]) -> list[WalInsert]:
    """(lsn, xid, pgoutput message) rows, as the slot returns them (stream order), to the inserts
    they carry, each with the end of the commit streamed before its transaction."""
    relations: dict[int, tuple[str, list[str]]] = {}
    inserts: list[WalInsert] = []
    lsns: dict[int, int] = {}
    commit_lsn, committed_at, xid, index = 0, PG_EPOCH, 0, 0
    last_commit_end: int | None = None
    prev_commit_end: int | None = None
    for lsn, row_xid, data in messages:
        r = _Reader(bytes(data))
        kind = chr(r.data[0])
        r.pos = 1
        if kind in "IUD":
            lsns[lsn] = lsns.get(lsn, 0) + 1
        if kind == "B":
            commit_lsn, ts, xid = r.take(">Q"), r.take(">q"), r.take(">I")
            committed_at, index = PG_EPOCH + timedelta(microseconds=ts), 0
            prev_commit_end = last_commit_end
        elif kind == "C":
            last_commit_end = lsn  # the slot stamps a commit with its end LSN, as Debezium stores it
        elif kind == "R":
            relid, _schema, name = r.take(">I"), r.string(), r.string()
            r.take(">b")
            columns = []
            for _ in range(r.take(">h")):
                r.take(">b")
                columns.append(r.string())
                r.take(">I")
                r.take(">i")
            relations[relid] = (name, columns)
        elif kind == "I":
            relid = r.take(">I")
            r.pos += 1  # 'N'
            name, columns = relations.get(relid, (f"relation {relid}", []))
            values = r.tuple()
            inserts.append(WalInsert(lsn, xid or row_xid, commit_lsn, committed_at, name,
                                     dict(zip(columns, values, strict=False)), index, prev_commit_end))
            index += 1
    return [replace(w, shares_lsn=True) if lsns.get(w.lsn, 0) > 1 else w for w in inserts]


def peek(cdc_dsn: str, slot: str, publication: str, max_changes: int = 100_000) -> list[WalInsert]:
    """The outbox inserts the slot still holds (connector stopped: the slot must be inactive)."""
    with connect_postgres(cdc_dsn) as conn:
        try:
            rows = conn.execute(PEEK, (slot, max_changes, publication)).fetchall()
        except psycopg.Error as exc:
            raise DatabaseError(f"reading slot {slot!r} failed: {str(exc).strip().splitlines()[0]}",
                                retriable=isinstance(exc, psycopg.errors.ObjectInUse)) from None
    return decode((lsn_int(lsn), xid, data) for lsn, xid, data in rows)
