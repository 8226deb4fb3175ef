"""The Postgres side of ``inbox="postgres"`` subscriptions: ``async def handler(event, tx)``.

Contract of :func:`postgres_invoker`'s ``invoke(event, attempt) -> bool``:
- one pooled connection (autocommit, see :func:`open_pool`), one transaction per call: it claims
  ``(consumer, event.id)`` in ``processed_events`` (:func:`relay.handling.pg_inbox.aclaim`), runs
  the handler with a :class:`Tx` on that transaction, and commits claim and effect together.
- exactly once per consumer and event id for the writes made through ``tx`` (``tx.execute``,
  ``tx.conn``, ``tx.outbox.write``): True means this call committed them; False means the claim
  was already committed by an earlier call, the handler was not called and nothing was written.
  There is no DUPLICATE sentinel: the bool is the whole answer (the pipeline counts False as a
  duplicate). Writes elsewhere (HTTP calls, another database) are at least once.
- consume -> effect -> publish is atomic: ``tx.outbox.write`` inserts the outbox row in the same
  transaction, so the follow-up event exists exactly when the effect and the claim committed.
- an exception from the handler rolls back the effect *and* the claim and propagates unchanged
  (``Retry`` and ``Reject`` as raised), so the next delivery handles the event again. A handler
  that swallows a failed statement and returns cannot commit (Postgres rolled the transaction
  back): the call raises DatabaseError instead of reporting the event handled.
- Postgres failures (no pooled connection in time, BEGIN/COMMIT, the claim, the handler's SQL)
  raise :class:`relay.errors.DatabaseError`, retriable for connection problems, serialization
  failures and deadlocks (pg_inbox's translation); never a bare psycopg error.
- concurrent first deliveries of one event id (READ COMMITTED): the second claim waits for the
  first transaction, then returns False if it committed, True if it rolled back; the waiter holds
  its pooled connection meanwhile. Calls for distinct ids run in parallel, up to the pool size:
  size the pool for every lane that can hold a connection at once (extra calls wait for one, up
  to the pool's timeout, then fail retriably).
- in a batch (relay.consume.batch) the claim and the handler run in the batch's transaction
  instead (no savepoint: a failure rolls the batch back), and commit with it.
- a batch handler (``subscribe(..., inbox="postgres", batch=N)``, ``async def h(events, tx)``) is
  called once per batch, as the batch ends, with the events whose ids the batch claimed (in
  offset order; duplicates left out) and a Tx on the batch's transaction: claims and effects
  commit together. If it raises, the transaction rolls back and those events are handled again
  in halves, each half a batch of its own, until a bad one is alone with a list of one
  (relay.consume.group_commit).
- a :class:`Tx` is valid only during its handler call; using it afterwards raises RelayError (its
  connection went back to the pool, maybe into another event's transaction).

``processed_events`` comes from ``relay outbox migrate`` (migration 0007); the worker checks for it
with :func:`check_inbox_table` / :func:`acheck_inbox_table` before it starts.
"""

from __future__ import annotations

import uuid
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, cast

import psycopg
from psycopg.abc import Params, QueryNoTemplate
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from relay.consume.batch import CURRENT, Batch
from relay.crashpoints import CrashPoint, reach
from relay.deps import CONNECT_TIMEOUT_S
from relay.errors import ConfigError, DatabaseError, RelayError
from relay.handling.event import Event
from relay.handling.pg_inbox import CLAIM_ALL, UNCLAIM, _translate, aclaim
from relay.outbox.writer import (
    DEFAULT_SCHEMAS,
    OutboxEvent,
    WriteResult,
    awrite,
    awrite_many,
    awrite_prepared,
    prepare_many,
)

Conn = psycopg.AsyncConnection[TupleRow]
Pool = AsyncConnectionPool[Conn]
Handler = Callable[[Event, "Tx"], Awaitable[object]]
BatchHandler = Callable[[list[Event], "Tx"], Awaitable[object]]
Invoke = Callable[[Event, int], Awaitable[bool]]

POOL_NAME = "relay-inbox"
POOL_TIMEOUT_S = 30.0  # psycopg_pool's default wait for a free connection


class TxOutbox:
    """Outbox writes in the handler's transaction: they commit (and get published) with its claim
    and effect, and vanish with them on rollback. Same arguments and results as
    :func:`relay.outbox.writer.awrite` / ``awrite_many`` minus the connection."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    async def write(
        self, *, aggregatetype: str, aggregateid: str, type: str, payload: Any,
        headers: Mapping[str, str] | None = None, event_id: uuid.UUID | str | None = None,
        idempotency_key: str | None = None, request_hash: str | None = None, delete_after: bool = False,
        schemas: Any = DEFAULT_SCHEMAS, max_event_bytes: int | None = None,
    ) -> uuid.UUID:
        """Insert one event; its id (the first event's id for a repeated idempotency key)."""
        with self._noting_failures():
            return await awrite(self._tx.conn, aggregatetype=aggregatetype, aggregateid=aggregateid, type=type,
                                payload=payload, headers=headers, event_id=event_id,
                                idempotency_key=idempotency_key, request_hash=request_hash,
                                delete_after=delete_after, schemas=schemas, max_event_bytes=max_event_bytes)

    async def write_many(self, events: Iterable[OutboxEvent], *, delete_after: bool = False,
                         schemas: Any = DEFAULT_SCHEMAS, max_event_bytes: int | None = None) -> list[WriteResult]:
        """Insert several events in order; one result per event."""
        with self._noting_failures():
            return await awrite_many(self._tx.conn, events, delete_after=delete_after, schemas=schemas,
                                     max_event_bytes=max_event_bytes)

    async def write_later(self, events: Iterable[OutboxEvent], *, schemas: Any = DEFAULT_SCHEMAS,
                          max_event_bytes: int | None = None) -> list[uuid.UUID]:
        """Insert several events (no idempotency keys) in the transaction, validated now: in a
        batch they are queued and go out with the batch's other queued events as one multi-row
        INSERT just before its COMMIT (after the batch's immediate writes; among themselves in
        call order), outside one at once. Their ids. A database refusal then fails the batch as
        a failed COMMIT does: its events are handled again in halves, the bad one alone."""
        conn = self._tx.conn
        rows = prepare_many(events, schemas=schemas, max_event_bytes=max_event_bytes)
        batch = CURRENT.get()
        if batch is not None and batch.conn is conn:
            batch.outbox.extend(rows)
            return [row.id for row in rows]
        with self._noting_failures():
            return [r.id for r in await awrite_prepared(conn, rows)]

    @contextmanager
    def _noting_failures(self) -> Iterator[None]:
        """A DatabaseError from inside is noted on the Tx (its commit check names it), then raised."""
        try:
            yield
        except DatabaseError as exc:
            self._tx._failed(exc)
            raise


class Tx:
    """What a postgres-inbox handler receives: the open transaction that also holds the event's
    claim. ``conn`` is the psycopg AsyncConnection inside it (do not commit or roll it back;
    ``async with tx.conn.transaction()`` makes a savepoint); ``execute`` runs one statement with
    errors as DatabaseError; ``send`` queues one whose result is not needed (pipelined in a
    batch); ``outbox`` writes follow-up events in it; ``attempt`` is the delivery
    attempt (1: first); ``state`` is the consumer's shared state (filled by startup hooks)."""

    __slots__ = ("_conn", "_failure", "_pipeline", "outbox", "attempt", "state", "consumer", "event_id")

    def __init__(self, conn: Conn, *, consumer: str, event_id: str, attempt: int, state: dict[str, Any],
                 pipeline: Any = None) -> None:
        self._conn: Conn | None = conn
        self._pipeline = pipeline  # the batch's psycopg pipeline, if any
        self._failure: DatabaseError | None = None
        self.outbox = TxOutbox(self)
        self.attempt, self.state, self.consumer, self.event_id = attempt, state, consumer, event_id

    @property
    def pipelined(self) -> bool:
        """True inside a batch: statements queued with :meth:`send` go out without a round trip."""
        return self._pipeline is not None

    @property
    def conn(self) -> Conn:
        if self._conn is None:
            raise RelayError(f"the Tx of {self.consumer!r} for event {self.event_id} was used after its handler "
                             "returned; its transaction is over (use it only inside the handler call)")
        return self._conn

    async def execute(self, query: QueryNoTemplate, params: Params | None = None) -> psycopg.AsyncCursor[TupleRow]:
        """Run one statement in the transaction and wait for its result; its cursor (fetch from
        it, read ``rowcount``). psycopg errors become DatabaseError (retriable: connection,
        serialization failure, deadlock)."""
        conn = self.conn
        try:
            cursor = await conn.execute(query, params)
            if self._pipeline is not None:  # in a batch: this statement's result (and error) now
                await self._pipeline.sync()
            return cursor
        except psycopg.Error as exc:
            raise self._failed(_translate(exc, f"{self.consumer!r} handling {self.event_id}: statement")) from exc

    async def send(self, query: QueryNoTemplate, params: Params | None = None) -> None:
        """Queue one statement whose result the handler does not need (an INSERT of the effect):
        in a batch it goes out without waiting for the reply (pipeline mode), so a batch of such
        handlers costs about one round trip. An error shows later: at the handler's next
        ``execute`` or at COMMIT, and then the batch's events are handled again in halves until
        the failing event is alone, so it still takes its own retry / dead-letter path. Outside a
        batch it is :meth:`execute`."""
        conn = self.conn
        try:
            await conn.execute(query, params)
        except psycopg.Error as exc:
            raise self._failed(_translate(exc, f"{self.consumer!r} handling {self.event_id}: statement")) from exc

    def _failed(self, exc: DatabaseError) -> DatabaseError:
        self._failure = exc
        return exc

    def _committable(self) -> None:
        """Raise when the handler returned although a statement failed (Postgres aborted the
        transaction: committing would silently roll back the effect and the claim)."""
        if self.conn.info.transaction_status != TransactionStatus.INERROR:
            return
        last = self._failure
        cause = f" (last failure: {last})" if last is not None else ""
        raise DatabaseError(f"{self.consumer!r} handling {self.event_id}: the handler returned after a failed "
                            f"statement{cause}; the transaction was rolled back, nothing committed",
                            retriable=last.retriable if last is not None else False)

    def _end(self) -> None:
        self._conn = None


def postgres_invoker(pool: Pool, consumer: str, handler: Handler | BatchHandler, state: dict[str, Any], *,
                     batch_handler: bool = False) -> Invoke:
    """``invoke(event, attempt) -> bool`` running ``handler(event, tx)`` exactly once per
    ``(consumer, event.id)`` (see the module's contract). ``batch_handler``: ``handler(events,
    tx)``; in a batch an event is only claimed and collected (:func:`batch_handler_end` calls it),
    outside one (a retry, an event alone after its batch was halved) it gets a list of one."""
    one = cast(Handler, handler)
    if batch_handler:
        async def one(event: Event, tx: Tx) -> None:
            await cast(BatchHandler, handler)([event], tx)

    async def invoke(event: Event, attempt: int) -> bool:
        what = f"{consumer!r} handling {event.id}"
        batch = CURRENT.get()
        try:
            if batch is not None:  # in the batch's transaction (relay.consume.batch), no savepoint
                claimed = batch.take_claim(event.id)
                if batch_handler:
                    return await _collect_in(batch, consumer, event, claimed)
                return await _handle_in(batch.conn, consumer, one, event, attempt, state, claimed, batch.pipeline)
            async with pool.connection() as conn:
                return await _handle(conn, consumer, one, event, attempt, state)
        except PoolTimeout as exc:
            raise DatabaseError(f"{what}: no connection from pool {pool.name!r} within {pool.timeout:g}s "
                                f"(Postgres unreachable, or the pool is too small): {exc}", retriable=True) from exc
        except psycopg.Error as exc:  # BEGIN/COMMIT, the handler's own use of tx.conn
            raise _translate(exc, what) from exc

    return invoke


async def _handle_in(conn: Conn, consumer: str, handler: Handler, event: Event, attempt: int,
                     state: dict[str, Any], claimed: bool | None = None, pipeline: Any = None) -> bool:
    """Claim (unless ``claimed`` says how the batch's up-front claim went) and handle in the
    transaction already open on ``conn``; a failure leaves it to the caller to roll back (the
    batch driver rolls the whole batch back)."""
    tx = Tx(conn, consumer=consumer, event_id=event.id, attempt=attempt, state=state, pipeline=pipeline)
    try:
        if not (await aclaim(conn, consumer, event.id) if claimed is None else claimed):
            return False
        await handler(event, tx)
        tx._committable()
        return True
    finally:
        tx._end()


async def _collect_in(batch: Batch, consumer: str, event: Event, claimed: bool | None) -> bool:
    """Claim (unless claimed up front) and keep ``event`` for the batch handler; False: handled before."""
    if claimed is None:
        claimed = await aclaim(batch.conn, consumer, event.id)
    if claimed:
        batch.collected.append(event)
    return claimed


def batch_handler_end(consumer: str, handler: BatchHandler,
                      state: dict[str, Any]) -> Callable[[Batch], Awaitable[None]]:
    """What ends a batch of a batch handler: ``handler(events, tx)`` with the claimed events, in
    the batch's transaction (before its COMMIT)."""
    async def end(batch: Batch) -> None:
        events = list(batch.collected)
        first, last = events[0].id, events[-1].id
        tx = Tx(batch.conn, consumer=consumer, event_id=first if len(events) == 1 else f"{first}..{last}",
                attempt=1, state=state, pipeline=batch.pipeline)
        try:
            await batch.call(handler(events, tx))
            tx._committable()
        finally:
            tx._end()
    return end


async def _handle(conn: Conn, consumer: str, handler: Handler, event: Event, attempt: int,
                  state: dict[str, Any]) -> bool:
    """Claim and handle in a transaction of its own (rolled back when anything raises)."""
    async with conn.transaction():
        handled = await _handle_in(conn, consumer, handler, event, attempt, state)
    reach(CrashPoint.AFTER_COMMAND_COMMIT_BEFORE_RESPONSE)  # committed; the offset not yet
    return handled


def batch_opener(pool: Pool, consumer: str, end: Callable[[Batch], Awaitable[None]] | None = None,
                 ) -> Callable[[], AbstractAsyncContextManager[Batch]]:
    """``open_batch()``: a pooled connection in an open transaction, as a :class:`Batch`; the
    transaction commits when the block ends (psycopg errors, COMMIT's included, propagate),
    after ``end(batch)`` when events were collected (a batch handler's call).

    The batch claims its events' ids in one statement up front (``Batch.prepare``); before the
    COMMIT, the claims of events that were not handled in it (parked behind a retry, filtered
    by type, dead-lettered) are deleted again, so that a later delivery still handles them. The
    connection is in pipeline mode for the batch (see the comment below)."""
    @asynccontextmanager
    async def open_batch() -> AsyncIterator[Batch]:
        # pipeline mode: Tx.send statements go out without waiting for each reply (one round trip
        # per batch, as executemany); Tx.execute still waits for its own result. An error of a
        # sent statement surfaces later (a fetch, COMMIT): the driver then handles the batch's
        # events again, in halves (relay.consume.group_commit)
        async with pool.connection() as conn, conn.pipeline() as pipeline, conn.transaction():
            batch = Batch(conn, pipeline=pipeline, calls_handler=end is not None)

            async def prepare(ids: list[str]) -> None:
                batch.claims = dict.fromkeys(ids, False)
                if ids:
                    rows = await (await conn.execute(CLAIM_ALL, (consumer, ids))).fetchall()
                    batch.claims.update((str(row[0]), True) for row in rows)
            batch.prepare = prepare
            yield batch
            if end is not None and batch.collected:
                await end(batch)
            if batch.outbox:  # TxOutbox.write_later's rows: one multi-row INSERT for the batch
                await awrite_prepared(conn, batch.outbox)
            unused = [i for i, fresh in (batch.claims or {}).items() if fresh and i not in batch.used]
            if unused:
                await conn.execute(UNCLAIM, (consumer, unused))
    return open_batch


def open_pool(dsn: str, size: int, *, name: str = POOL_NAME, timeout_s: float = POOL_TIMEOUT_S) -> Pool:
    """A pool of up to ``size`` autocommit connections to ``dsn``, not opened yet: the caller runs
    ``await pool.open(wait=True, timeout=...)`` and ``await pool.close()``. A connection is
    checked (an empty query) before it is handed out, so one that died while idle (a Postgres
    restart) is replaced instead of failing an event; connecting gives up after a few seconds."""
    return AsyncConnectionPool(dsn, min_size=1, max_size=size, open=False, name=name, timeout=timeout_s,
                               kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
                               check=AsyncConnectionPool.check_connection)


_INBOX_STATE = ("SELECT to_regclass('processed_events') IS NOT NULL, "
                "coalesce(has_table_privilege(to_regclass('processed_events'), 'INSERT'), false), "
                "current_database(), current_user, current_setting('search_path')")


def _inbox_problems(row: tuple[Any, ...] | None) -> list[str]:
    if row is None:
        return ["processed_events check returned no row"]
    exists, may_insert, database, user, search_path = row
    if not exists:
        return [f"table processed_events (the Postgres inbox of inbox=\"postgres\" subscriptions) is missing in "
                f"database {database!r} (search_path {search_path}): run `relay outbox migrate`"]
    if not may_insert:
        return [f"role {user!r} may not INSERT into processed_events in database {database!r}: "
                f"GRANT INSERT ON processed_events TO {user}"]
    return []


def check_inbox_table(conn: psycopg.Connection[Any]) -> None:
    """Raise ConfigError when ``processed_events`` is missing (or not writable by this role)
    where ``conn`` resolves it; psycopg errors become DatabaseError."""
    try:
        row = conn.execute(_INBOX_STATE).fetchone()
    except psycopg.Error as exc:
        raise _translate(exc, "processed_events check") from exc
    problems = _inbox_problems(row)
    if problems:
        raise ConfigError(problems)


async def acheck_inbox_table(pool: Pool) -> None:
    """Async twin of :func:`check_inbox_table`, on a connection of ``pool``."""
    try:
        async with pool.connection() as conn:
            row = await (await conn.execute(_INBOX_STATE)).fetchone()
    except psycopg.Error as exc:
        raise _translate(exc, "processed_events check") from exc
    problems = _inbox_problems(row)
    if problems:
        raise ConfigError(problems)
