"""Write outbox events inside the caller's transaction (sync and async psycopg connections).

Contract:
- writers only run statements on the connection they are given; they never commit, roll back or
  open a connection. An event becomes visible (and is published) exactly when the caller's
  transaction commits, and disappears with it on rollback.
- every event is validated *before* anything is sent to Postgres: a bad event raises
  :class:`relay.errors.InvalidEvent` naming the field, the value and what was expected, and
  nothing is written (in a batch: nothing of the batch).
- the event id (uuid4 unless given) is the Kafka header ``id`` and the consumers' dedup key.
  Events of one ``aggregateid`` reach Kafka in commit order, on one partition.
- idempotency: with ``idempotency_key``, the same key (per aggregatetype) and the same request
  hash returns the *first* event's id and writes nothing (``WriteResult.duplicate``); the same key
  with a different hash raises :class:`relay.errors.IdempotencyConflict`. Concurrent writers with
  one key produce exactly one row (the unique constraint decides; the loser sees the winner's row
  once it commits). The key is remembered as long as its row exists (see ``relay outbox prune``).
- size: an event larger than ``max_event_bytes`` (default: the ``RELAY_MAX_EVENT_BYTES`` setting)
  counted as payload (as published: jsonb text or Avro bytes) + aggregateid + headers raises
  :class:`InvalidEvent` naming its size and the limit; the database holds raw SQL to the same
  limit (``relay outbox migrate`` stores it). Aggregate types whose topics Kafka would refuse side
  by side (``order.item`` after ``order_item``) are refused by the database, also as InvalidEvent.
- ``delete_after=True`` deletes the row in the same transaction right after inserting it: the
  CDC relay still publishes it (Debezium reads the insert from the WAL; the publication carries
  inserts only) and the table does not grow. The polling relay never sees such rows.

The SQL conversation is written once as a generator (``_steps``) and driven by a sync or an
async connection, so both writers behave identically.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Generator, Iterable, Iterator, Mapping

import psycopg
from psycopg.types.json import Jsonb

from relay.errors import DatabaseError, IdempotencyConflict, InvalidEvent
from relay.headers import AGGREGATE_TYPE_RE

_COLUMNS = "id, aggregatetype, aggregateid, type, payload, headers, idempotency_key, request_hash, payload_schema"


_ROW = "(%s, %s, %s, %s, %s, %s, %s, %s, %s)"
# rows per multi-row INSERT: 9 parameters each (Postgres allows 65,535), and the statement stays
# short enough for psycopg to cache its parsing (4 kB); jsonb rows go in a JSON document instead
ROWS_PER_INSERT = 90
ROWS_PER_DOCUMENT = 1000
# the plain rows of a jsonb outbox table as one JSON array: one short statement whatever the
# count (psycopg parses a statement's placeholders on every call once it is over 4 kB long),
# inserted in the array's order (ordinality: the rows get their seq numbers in that order)
_FROM_DOCUMENT = """
INSERT INTO {table} (id, aggregatetype, aggregateid, type, payload, headers, payload_schema)
SELECT r.id, r.aggregatetype, r.aggregateid, r.type, r.payload, r.headers, r.payload_schema
FROM ROWS FROM (jsonb_to_recordset(%s::jsonb) AS (id uuid, aggregatetype text, aggregateid text, type text,
                                                  payload jsonb, headers jsonb, payload_schema text))
     WITH ORDINALITY AS r(id, aggregatetype, aggregateid, type, payload, headers, payload_schema, n)
ORDER BY r.n
"""


@dataclass(frozen=True)
class _Sql:
    table: str
    insert: str
    insert_idempotent: str
    first: str
    delete: str
    insert_document: str | None = None  # jsonb tables: plain rows as one JSON document

    @classmethod
    def for_table(cls, table: str, *, jsonb: bool) -> "_Sql":
        insert = f"INSERT INTO {table} ({_COLUMNS}) VALUES {_ROW}"
        return cls(table, insert, insert + " ON CONFLICT (aggregatetype, idempotency_key) DO NOTHING RETURNING id",
                   f"SELECT id, request_hash FROM {table} WHERE aggregatetype = %s AND idempotency_key = %s",
                   f"DELETE FROM {table} WHERE id = ANY(%s)", _FROM_DOCUMENT.format(table=table) if jsonb else None)

    def plain_inserts(self, rows: list[_Row]) -> Iterator[_Step]:
        """The statements inserting key-less ``rows`` in their order."""
        if self.insert_document is not None:
            for at in range(0, len(rows), ROWS_PER_DOCUMENT):
                yield self.insert_document, (_document(rows[at:at + ROWS_PER_DOCUMENT]),), ONE
            return
        for at in range(0, len(rows), ROWS_PER_INSERT):
            part = rows[at:at + ROWS_PER_INSERT]
            yield _insert_rows(self.table, len(part)), [v for r in part for v in r.params], ONE


def _document(rows: list[_Row]) -> str:
    """The rows as the JSON array _FROM_DOCUMENT reads; payload and headers are JSON text already."""
    return "[" + ",".join(
        f'{{"id":"{r.id}","aggregatetype":{_str(r.params[1])},"aggregateid":{_str(r.params[2])},'
        f'"type":{_str(r.params[3])},"payload":{_text(r.params[4])},"headers":{_text(r.params[5])},'
        f'"payload_schema":{_str(r.params[8])}}}' for r in rows) + "]"


def _str(value: str | None) -> str:
    return "null" if value is None else json.dumps(value, ensure_ascii=False)


def _text(value: Jsonb | None) -> str:
    return "null" if value is None else str(value.obj)


@functools.lru_cache(maxsize=256)
def _insert_rows(table: str, n: int) -> str:
    return f"INSERT INTO {table} ({_COLUMNS}) VALUES " + ", ".join([_ROW] * n)


# JSON payloads go to `outbox` (jsonb); aggregate types declared avro go to `outbox_avro` (bytea)
_TABLES = {"json": _Sql.for_table("outbox", jsonb=True), "avro": _Sql.for_table("outbox_avro", jsonb=False)}


@dataclass(frozen=True)
class OutboxEvent:
    aggregatetype: str
    aggregateid: str
    type: str
    payload: Any
    headers: Mapping[str, str] | None = None
    event_id: uuid.UUID | str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None  # default: sha256 of the canonical (type, aggregateid, payload)


@dataclass(frozen=True)
class WriteResult:
    id: uuid.UUID
    duplicate: bool = False  # True: an earlier event with this idempotency key stands; nothing written


@dataclass(frozen=True)
class _Row:
    params: tuple[Any, ...]
    id: uuid.UUID
    key: str | None = field(default=None)
    request_hash: str | None = field(default=None)
    sql: _Sql = field(default=_TABLES["json"])


Prepared = _Row  # a validated event, ready to insert (prepare_many)


def _require_text(field_name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidEvent(field_name, value, "a non-empty string")
    if not value.strip():
        raise InvalidEvent(field_name, value, "a non-empty string (not blank)")
    return value


def _json_text(field_name: str, value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=False)
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(field_name, value, f"a JSON-serialisable value ({exc})") from None


def request_hash(aggregatetype: str, aggregateid: str, type: str, payload_text: str | None) -> str:
    canonical = json.dumps([aggregatetype, aggregateid, type,
                            None if payload_text is None else json.loads(payload_text)],
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def validate(
    *, aggregatetype: Any, aggregateid: Any, type: Any, payload: Any,
    headers: Mapping[str, str] | None = None, event_id: Any = None,
) -> tuple[uuid.UUID, str | None, str | None]:
    """Check one event; returns (event id, payload JSON text, headers JSON text)."""
    _require_text("aggregatetype", aggregatetype)
    if not AGGREGATE_TYPE_RE.match(aggregatetype):
        raise InvalidEvent("aggregatetype", aggregatetype,
                           "1-200 characters of [A-Za-z0-9._-] (it becomes part of a Kafka topic name)")
    _require_text("aggregateid", aggregateid)
    _require_text("type", type)
    payload_text = None if payload is None else _json_text("payload", payload)
    headers_text = None
    if headers is not None:
        if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise InvalidEvent("headers", headers, "a mapping of str to str")
        headers_text = _json_text("headers", dict(headers))
    if event_id is None:
        eid = uuid.uuid4()
    else:
        try:
            eid = event_id if isinstance(event_id, uuid.UUID) else uuid.UUID(str(event_id))
        except ValueError:
            raise InvalidEvent("event_id", event_id, "a UUID") from None
    return eid, payload_text, headers_text


@functools.cache
def _settings_limit() -> int:
    from relay.config import load_settings

    return load_settings().max_event_bytes


def published_size(aggregateid: str, stored_payload: bytes | str | None, headers_text: str | None) -> int:
    """Bytes the database's size guard counts: payload as published + aggregateid + headers."""
    payload = 0 if stored_payload is None else len(
        stored_payload if isinstance(stored_payload, bytes) else stored_payload.encode())
    return payload + len(aggregateid.encode()) + (0 if headers_text is None else len(headers_text.encode()))


def _jsonb_text(value: Any) -> str:
    """About how Postgres renders jsonb (``", "`` and ``": "`` separators): what Debezium publishes."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _check_size(event: OutboxEvent, stored: bytes | None, headers_text: str | None, limit: int) -> None:
    payload = stored if stored is not None else (None if event.payload is None else _jsonb_text(event.payload))
    size = published_size(event.aggregateid, payload,
                          None if headers_text is None else _jsonb_text(json.loads(headers_text)))
    if size > limit:
        raise InvalidEvent("payload", f"{size:,} bytes", f"at most {limit:,} bytes for payload + aggregateid + "
                           "headers (RELAY_MAX_EVENT_BYTES); store large content elsewhere and publish a reference")


def _prepare(event: OutboxEvent, delete_after: bool, schemas: Any, limit: int) -> _Row:
    eid, payload_text, headers_text = validate(
        aggregatetype=event.aggregatetype, aggregateid=event.aggregateid, type=event.type,
        payload=event.payload, headers=event.headers, event_id=event.event_id)
    declared = None
    fmt = "json" if schemas is None else schemas.format(event.aggregatetype)
    if fmt == "avro" and schemas.latest(event.aggregatetype, event.type) is None:
        raise InvalidEvent("type", event.type, f"an event type with a declared schema (aggregate type "
                                               f"{event.aggregatetype!r} is declared avro in {schemas.root})")
    if schemas is not None and event.payload is not None:
        declared = schemas.validate(event.aggregatetype, event.type, event.payload)  # InvalidEvent with path
    stored: bytes | Jsonb | None  # the payload column: Avro bytes (outbox_avro) or jsonb text (outbox)
    if fmt == "avro":
        from relay.schemas.codec import encode

        stored = None if event.payload is None else encode(declared, event.payload)
        _check_size(event, stored, headers_text, limit)
    else:
        _check_size(event, None, headers_text, limit)
        stored = None if payload_text is None else Jsonb(payload_text, dumps=_identity)
    key, digest = event.idempotency_key, None
    if key is not None:
        _require_text("idempotency_key", key)
        if delete_after:
            raise InvalidEvent("idempotency_key", key, "None when delete_after=True (a deleted row remembers no key)")
        digest = event.request_hash or request_hash(event.aggregatetype, event.aggregateid, event.type, payload_text)
        if not isinstance(digest, str) or not digest:
            raise InvalidEvent("request_hash", event.request_hash, "a non-empty string")
    params = (
        eid, event.aggregatetype, event.aggregateid, event.type, stored,
        None if headers_text is None else Jsonb(headers_text, dumps=_identity),
        key, digest, None if declared is None else declared.ref,
    )
    return _Row(params, eid, key, digest, _TABLES[fmt])


def _identity(text: str) -> str:
    return text


# A step is (sql, params, mode); the driver sends back the fetched row (FETCH) or None.
ONE, FETCH = "one", "fetch"  # run once; run once and fetch a row
_Step = tuple[str, Any, str]
_Conversation = Generator[_Step, tuple[Any, ...] | None, list[WriteResult]]


def _plain_run(rows: list[_Row], start: int) -> list[_Row]:
    """The rows from ``start`` on without an idempotency key and for the same table: one executemany."""
    run = [rows[start]]
    for row in rows[start + 1:]:
        if row.key is not None or row.sql is not run[0].sql:
            break
        run.append(row)
    return run


def _steps(rows: list[_Row], delete_after: bool) -> _Conversation:
    results: list[WriteResult] = []
    i = 0
    while i < len(rows):
        row = rows[i]
        q = row.sql
        if row.key is None:
            run = _plain_run(rows, i)
            i += len(run)
            # consecutive plain inserts: one multi-row INSERT, in order. Not an executemany: the
            # table's triggers (topic guard, the statement-level notify) then ran once per row as
            # a statement of its own, ~60 us of server time per row
            yield from q.plain_inserts(run)
            if delete_after:
                yield q.delete, ([r.id for r in run],), ONE
            results.extend(WriteResult(r.id) for r in run)
            continue
        i += 1
        inserted = yield q.insert_idempotent, row.params, FETCH
        if inserted is not None:
            results.append(WriteResult(row.id))
            continue
        aggregatetype = row.params[1]
        first = yield q.first, (aggregatetype, row.key), FETCH
        if first is None:  # the row holding the key vanished between the two statements
            raise DatabaseError(f"idempotency key {row.key!r}: conflicting row disappeared; retry", retriable=True)
        first_id, first_hash = first
        if first_hash != row.request_hash:
            raise IdempotencyConflict(aggregatetype, row.key, str(first_id), first_hash, row.request_hash or "")
        results.append(WriteResult(first_id, duplicate=True))
    return results


def _translate(exc: psycopg.Error) -> DatabaseError | InvalidEvent:
    diag = exc.diag
    if isinstance(exc, psycopg.errors.CheckViolation) and diag.constraint_name == "outbox_topic_collision":
        return InvalidEvent("aggregatetype", diag.message_detail, diag.message_hint or "")
    if isinstance(exc, psycopg.errors.CheckViolation) and diag.constraint_name == "outbox_event_size":
        return InvalidEvent("payload", "(larger than the database allows)", "payload + aggregateid + headers "
                            "within the limit `relay outbox migrate` stored (constraint outbox_event_size)")
    retriable = isinstance(exc, (psycopg.OperationalError, psycopg.errors.SerializationFailure,
                                 psycopg.errors.DeadlockDetected))
    return DatabaseError(f"outbox write failed: {exc}", retriable=retriable)


def _drive(conn: psycopg.Connection, steps: _Conversation) -> list[WriteResult]:
    try:
        step = next(steps)
        while True:
            sql, params, mode = step
            cur = conn.execute(sql, params)
            step = steps.send(cur.fetchone() if mode == FETCH else None)
    except StopIteration as done:
        results: list[WriteResult] = done.value  # the generator's return value
        return results
    except psycopg.Error as exc:
        raise _translate(exc) from exc


async def _adrive(conn: psycopg.AsyncConnection, steps: _Conversation) -> list[WriteResult]:
    try:
        step = next(steps)
        while True:
            sql, params, mode = step
            cur = await conn.execute(sql, params)
            step = steps.send(await cur.fetchone() if mode == FETCH else None)
    except StopIteration as done:
        results: list[WriteResult] = done.value  # the generator's return value
        return results
    except psycopg.Error as exc:
        raise _translate(exc) from exc


class _Default:
    def __repr__(self) -> str:
        return "the repo's schemas/ folder"


DEFAULT_SCHEMAS: Any = _Default()


def _registry(schemas: Any) -> Any:
    if schemas is DEFAULT_SCHEMAS:
        from relay.schemas import SchemaRegistry

        return SchemaRegistry.default()
    return schemas


def _rows(events: Iterable[OutboxEvent], delete_after: bool, schemas: Any,
          max_event_bytes: int | None = None) -> list[_Row]:
    registry = _registry(schemas)
    limit = _settings_limit() if max_event_bytes is None else max_event_bytes
    return [_prepare(e, delete_after, registry, limit) for e in events]  # all validated before any SQL


def write_many(conn: psycopg.Connection, events: Iterable[OutboxEvent], *, delete_after: bool = False,
               schemas: Any = DEFAULT_SCHEMAS, max_event_bytes: int | None = None) -> list[WriteResult]:
    """Insert several events in the caller's transaction, in order; one result per event.
    Consecutive events without an idempotency key go out as one INSERT, in order: a JSON
    document of up to ``ROWS_PER_DOCUMENT`` rows (jsonb outbox), or up to ``ROWS_PER_INSERT``
    rows of VALUES (Avro outbox)."""
    return _drive(conn, _steps(_rows(events, delete_after, schemas, max_event_bytes), delete_after))


def prepare_many(events: Iterable[OutboxEvent], *, schemas: Any = DEFAULT_SCHEMAS,
                 max_event_bytes: int | None = None) -> list[Prepared]:
    """Validate events now (raising :class:`InvalidEvent` as :func:`write_many` would) and
    write them later with :func:`awrite_prepared`; no idempotency keys (their results would come
    too late to tell a duplicate)."""
    rows = _rows(events, False, schemas, max_event_bytes)
    for row in rows:
        if row.key is not None:
            raise InvalidEvent("idempotency_key", row.key, "None for an event written later (use write_many)")
    return rows


async def awrite_prepared(conn: psycopg.AsyncConnection, rows: list[Prepared]) -> list[WriteResult]:
    """Insert rows from :func:`prepare_many` in ``conn``'s transaction, in order (multi-row INSERTs)."""
    return await _adrive(conn, _steps(rows, False))


async def awrite_many(conn: psycopg.AsyncConnection, events: Iterable[OutboxEvent], *,
                      delete_after: bool = False, schemas: Any = DEFAULT_SCHEMAS,
                      max_event_bytes: int | None = None) -> list[WriteResult]:
    """Async twin of :func:`write_many`."""
    return await _adrive(conn, _steps(_rows(events, delete_after, schemas, max_event_bytes), delete_after))


def write(
    conn: psycopg.Connection, *, aggregatetype: str, aggregateid: str, type: str, payload: Any,
    headers: Mapping[str, str] | None = None, event_id: uuid.UUID | str | None = None,
    idempotency_key: str | None = None, request_hash: str | None = None, delete_after: bool = False,
    schemas: Any = DEFAULT_SCHEMAS, max_event_bytes: int | None = None,
) -> uuid.UUID:
    """Insert one event in ``conn``'s current transaction; return its id (the first event's id
    when ``idempotency_key`` was already used for the same request).

    ``payload`` is any JSON-serialisable value; ``None`` stores SQL NULL (a record without value).
    When ``schemas`` (default: the repo's ``schemas/`` folder) declares an Avro schema for
    (aggregatetype, type), the payload must fit its latest version (InvalidEvent names the field
    path otherwise) and the version travels as header ``payload-schema``. ``schemas=None``
    skips the check. ``max_event_bytes`` overrides the ``RELAY_MAX_EVENT_BYTES`` setting for this
    call (the database still holds the stored limit).
    """
    event = OutboxEvent(aggregatetype, aggregateid, type, payload, headers, event_id, idempotency_key, request_hash)
    return write_many(conn, [event], delete_after=delete_after, schemas=schemas,
                      max_event_bytes=max_event_bytes)[0].id


async def awrite(
    conn: psycopg.AsyncConnection, *, aggregatetype: str, aggregateid: str, type: str, payload: Any,
    headers: Mapping[str, str] | None = None, event_id: uuid.UUID | str | None = None,
    idempotency_key: str | None = None, request_hash: str | None = None, delete_after: bool = False,
    schemas: Any = DEFAULT_SCHEMAS, max_event_bytes: int | None = None,
) -> uuid.UUID:
    """Async twin of :func:`write`."""
    event = OutboxEvent(aggregatetype, aggregateid, type, payload, headers, event_id, idempotency_key, request_hash)
    return (await awrite_many(conn, [event], delete_after=delete_after, schemas=schemas,
                              max_event_bytes=max_event_bytes))[0].id
