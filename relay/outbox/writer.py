"""Write outbox events inside the caller's transaction.

Contract:
- ``write`` only INSERTs through the connection it is given; it never commits, rolls back or opens
  a connection. The event becomes visible (and is published) exactly when the caller's business
  transaction commits, and disappears with it on rollback.
- Every argument is validated *before* anything is sent to Postgres: a bad event raises
  :class:`relay.errors.InvalidEvent` naming the field, the value and what was expected, and
  nothing is written.
- The returned event id (uuid4 unless given) is the Kafka header ``id`` and the consumers' dedup
  key. Events of one ``aggregateid`` reach Kafka in commit order, on one partition.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Mapping

import psycopg
from psycopg.types.json import Jsonb

from relay.errors import DatabaseError, InvalidEvent
from relay.headers import AGGREGATE_TYPE_RE

_INSERT = (
    "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload, headers)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
)


def _require_text(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidEvent(field, value, "a non-empty string")
    if not value.strip():
        raise InvalidEvent(field, value, "a non-empty string (not blank)")
    return value


def _json_text(field: str, value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(field, value, f"a JSON-serialisable value ({exc})") from None


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


def write(
    conn: psycopg.Connection, *, aggregatetype: str, aggregateid: str, type: str,
    payload: Any, headers: Mapping[str, str] | None = None, event_id: uuid.UUID | str | None = None,
) -> uuid.UUID:
    """Insert one event into the outbox within ``conn``'s current transaction; return its id.

    ``payload`` is any JSON-serialisable value; ``None`` stores SQL NULL (no Kafka record value).
    """
    eid, payload_text, headers_text = validate(
        aggregatetype=aggregatetype, aggregateid=aggregateid, type=type,
        payload=payload, headers=headers, event_id=event_id,
    )
    params = (
        eid, aggregatetype, aggregateid, type,
        None if payload_text is None else Jsonb(payload_text, dumps=_identity),
        None if headers_text is None else Jsonb(headers_text, dumps=_identity),
    )
    try:
        conn.execute(_INSERT, params)
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"outbox insert failed: {exc}", retriable=True) from exc
    except psycopg.Error as exc:
        raise DatabaseError(f"outbox insert failed: {exc}", retriable=False) from exc
    return eid


def _identity(text: str) -> str:
    return text
