"""Postgres inbox: a ``processed_events`` row written in the handler's own transaction.

Contract: ``claim`` / ``aclaim`` insert (consumer, event id) in the caller's open transaction and
return True the first time (do the effect, on the same connection, in the same transaction) and
False when that row is already committed (skip). The claim commits or rolls back together with
the effect, so a Postgres effect happens exactly once per consumer and event id, even when the
process dies between the commit and the Faust inbox record, or when a consumer group rebalances.
Concurrent first deliveries (READ COMMITTED): the second INSERT waits on the first's uncommitted
row, then returns False if the first commits, True if it rolls back. Under REPEATABLE READ or
SERIALIZABLE the second gets a retriable DatabaseError instead (serialization failure); its retry
returns False. The waiter holds its transaction open meanwhile: set ``lock_timeout`` if that matters.

A consumer uses it through ``@consumer.subscribe(..., inbox="postgres")`` (relay.consume.pg runs
the handler in the claiming transaction); ``claim`` / ``aclaim`` are for code outside a consumer.

Which inbox?
- Faust table inbox (``relay.handling.idempotency``, built into the idempotent consumer): effects
  outside Postgres, or effects that are idempotent anyway; no database round trip; *effectively
  once*: a crash after the effect but before the inbox record re-runs the handler.
- Postgres inbox (this module, ``processed_events`` from migration 0007): the effect is a write
  in the *same* Postgres database; *exactly once*. Cost: one INSERT per event (a primary-key
  probe) in the handler's transaction.
- Both combine: the Faust inbox skips most copies cheaply, this one catches what gets past it.
Rows older than the dedup window (7 days, as the Faust inbox) are deleted by ``prune``; a copy
delivered after that is handled again, exactly as with the Faust inbox.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from relay.errors import DatabaseError, InvalidEvent, RelayError

SCHEMA_LOCK_ID = 0x696E626F78  # "inbox": pg_advisory_xact_lock key of ensure_schema
DEFAULT_WINDOW = timedelta(days=7)  # the Faust inbox's default window (Settings.inbox_window_s)

DDL = """
CREATE TABLE IF NOT EXISTS processed_events (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id));
CREATE INDEX IF NOT EXISTS processed_events_processed_at ON processed_events (processed_at);
"""
CLAIM = "INSERT INTO processed_events (consumer, event_id) VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING 1"
# a batch: claim every id in one statement (the ids claimed now come back), release the unused ones
CLAIM_ALL = ("INSERT INTO processed_events (consumer, event_id) SELECT %s, unnest(%s::uuid[]) "
             "ON CONFLICT DO NOTHING RETURNING event_id")
UNCLAIM = "DELETE FROM processed_events WHERE consumer = %s AND event_id = ANY(%s::uuid[])"
PRUNE = """
DELETE FROM processed_events WHERE (consumer, event_id) IN (
    SELECT consumer, event_id FROM processed_events WHERE processed_at < now() - %s LIMIT %s)
"""


def _translate(exc: psycopg.Error, what: str) -> DatabaseError:
    retriable = isinstance(exc, (psycopg.OperationalError, psycopg.errors.SerializationFailure,
                                 psycopg.errors.DeadlockDetected))
    return DatabaseError(f"{what} failed: {type(exc).__name__}: {exc}", retriable=retriable)


def _params(conn: Any, consumer: str, event_id: uuid.UUID | str) -> tuple[str, uuid.UUID]:
    if not isinstance(consumer, str) or not consumer.strip():
        raise InvalidEvent("consumer", consumer, "a non-empty consumer name")
    try:
        eid = event_id if isinstance(event_id, uuid.UUID) else uuid.UUID(str(event_id))
    except ValueError:
        raise InvalidEvent("event_id", event_id, "a UUID (the outbox event id)") from None
    if conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
        # the claim would commit on its own, apart from the effect: exactly-once would be lost
        raise RelayError("claim must run inside the caller's open transaction "
                         "(`with conn.transaction():`), not on an idle autocommit connection")
    return consumer, eid


def ensure_schema(conn: psycopg.Connection) -> None:
    """Create ``processed_events`` and its pruning index if missing (idempotent; concurrent
    callers serialise on an advisory lock)."""
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_ID,))
            conn.execute(DDL)
    except psycopg.Error as exc:
        raise _translate(exc, "processed_events schema") from exc


def claim(conn: psycopg.Connection, consumer: str, event_id: uuid.UUID | str) -> bool:
    """True: first time, do the effect in this transaction. False: already processed, skip."""
    params = _params(conn, consumer, event_id)
    try:
        return conn.execute(CLAIM, params).fetchone() is not None
    except psycopg.Error as exc:
        raise _translate(exc, f"inbox claim of {params[1]} for {consumer!r}") from exc


async def aclaim(aconn: psycopg.AsyncConnection, consumer: str, event_id: uuid.UUID | str) -> bool:
    """Async twin of :func:`claim`."""
    params = _params(aconn, consumer, event_id)
    try:
        return await (await aconn.execute(CLAIM, params)).fetchone() is not None
    except psycopg.Error as exc:
        raise _translate(exc, f"inbox claim of {params[1]} for {consumer!r}") from exc


def prune(conn: psycopg.Connection, older_than: timedelta = DEFAULT_WINDOW, *, batch: int = 5000) -> int:
    """Delete rows processed more than ``older_than`` ago, in batches (one transaction each, so
    locks stay short); returns the number deleted."""
    total = 0
    try:
        while True:
            with conn.transaction():
                deleted = conn.execute(PRUNE, (older_than, batch)).rowcount
            total += deleted
            if deleted < batch:
                return total
    except psycopg.Error as exc:
        raise _translate(exc, "processed_events prune") from exc
