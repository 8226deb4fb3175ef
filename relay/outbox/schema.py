"""Versioned SQL migrations for the outbox, and the access Debezium needs to read it.

Contract:
- migrations are the files ``migrations/NNNN_name.sql``, applied in order, each exactly once, each
  in its own transaction together with its row in ``relay_schema_migrations``;
- concurrent ``migrate`` runs serialise on an advisory lock, so running it twice (or from two
  processes) is harmless;
- ``ensure_cdc_access`` creates the publication for the outbox tables only, publishing inserts
  only (Debezium runs with ``publication.autocreate.mode=disabled``), and grants the replication
  role SELECT on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg import sql

MIGRATION_LOCK_ID = 0x6F7574626F78  # "outbox": pg_advisory_xact_lock key
# JSON payloads (jsonb) and Avro payloads (bytea, aggregate types declared `avro`)
OUTBOX_TABLES = ("outbox", "outbox_avro")
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    found = []
    for entry in resources.files("relay.outbox").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions: {versions}")
    return found


def applied_versions(conn: psycopg.Connection) -> set[int]:
    row = conn.execute("SELECT to_regclass('relay_schema_migrations') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return set()
    return {row[0] for row in conn.execute("SELECT version FROM relay_schema_migrations")}


def migrate(conn: psycopg.Connection, *, max_event_bytes: int) -> list[Migration]:
    """Apply pending migrations and store the event size limit the database holds every insert to
    (``Settings.max_event_bytes``); returns the migrations applied by this call (empty when up to
    date). Changing the limit takes effect for the next insert."""
    done: list[Migration] = []
    for migration in migrations():
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS relay_schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            if migration.version in applied_versions(conn):
                continue
            conn.execute(migration.sql)
            conn.execute(
                "INSERT INTO relay_schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            done.append(migration)
    apply_size_limit(conn, max_event_bytes)
    return done


# what the size limit counts, per outbox table: the payload as published + aggregateid + headers
_EVENT_SIZE = {
    "outbox": "coalesce(octet_length(payload::text), 0)",
    "outbox_avro": "coalesce(octet_length(payload), 0)",
}


def apply_size_limit(conn: psycopg.Connection, max_event_bytes: int) -> bool:
    """(Re)write the ``outbox_event_size`` CHECK constraint of every outbox table when the stored
    limit differs; True when it changed. NOT VALID: rows already in the tables are not re-checked."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
        row = conn.execute("SELECT max_event_bytes FROM relay_outbox_limits").fetchone()
        if row is not None and row[0] == max_event_bytes:
            return False
        for table, payload in _EVENT_SIZE.items():
            size = sql.SQL(payload + " + octet_length(aggregateid) + coalesce(octet_length(headers::text), 0)")
            conn.execute(sql.SQL("ALTER TABLE {t} DROP CONSTRAINT IF EXISTS outbox_event_size, "
                                 "ADD CONSTRAINT outbox_event_size CHECK ({size} <= {limit}) NOT VALID").format(
                t=sql.Identifier(table), size=size, limit=sql.Literal(max_event_bytes)))
        conn.execute("INSERT INTO relay_outbox_limits (max_event_bytes) VALUES (%s) ON CONFLICT (singleton) "
                     "DO UPDATE SET max_event_bytes = EXCLUDED.max_event_bytes", (max_event_bytes,))
    return True


def ensure_cdc_access(conn: psycopg.Connection, *, publication: str, cdc_role: str | None) -> None:
    """Publication ``publication`` for table ``outbox`` only; SELECT for the replication role."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
        row = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,)).fetchone()
        pub = sql.Identifier(publication)
        if row is None:
            conn.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE {} WITH (publish = 'insert')").format(
                pub, sql.SQL(", ").join(sql.Identifier(t) for t in OUTBOX_TABLES)))
        else:
            # inserts only: the poller's published_at updates, prune's deletes and delete-after-insert
            # never reach Debezium, so EventRouter sees nothing but new events
            conn.execute(sql.SQL("ALTER PUBLICATION {} SET (publish = 'insert')").format(pub))
            members = {r[0] for r in conn.execute(
                "SELECT tablename FROM pg_publication_tables WHERE pubname = %s", (publication,))}
            for table in OUTBOX_TABLES:
                if table not in members:
                    conn.execute(sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(pub, sql.Identifier(table)))
        if cdc_role:
            role = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (cdc_role,)).fetchone()
            if role is not None:
                for table in OUTBOX_TABLES:
                    conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(
                        sql.Identifier(table), sql.Identifier(cdc_role)))
