"""The event a handler receives, decoded from a Kafka record of an ``outbox.event.*`` topic.

Decoding is strict: a record without a UUID ``id`` header, or whose value is neither JSON nor
binary Avro of a declared schema, raises
:class:`relay.errors.DecodeError` naming what is wrong; such a record is never handed to a
handler (it goes to the dead-letter topic).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping

from relay.errors import DecodeError
from relay.headers import Header

AVRO_MARKER = b"\xc3\x01"  # Avro single-object encoding (relay.schemas.codec); never starts JSON text


@dataclass(frozen=True)
class Event:
    id: str
    type: str | None
    key: str | None
    payload: Any
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None
    headers: Mapping[str, bytes] = field(default_factory=dict)


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


def decode(
    *, key: bytes | None, value: bytes | None, headers: Mapping[str, bytes] | list[tuple[str, bytes]] | None,
    topic: str, partition: int, offset: int, timestamp_ms: int | None = None, schemas: Any = None,
) -> Event:
    """Decode one record; JSON text, or binary Avro (single-object encoding, found by schema
    fingerprint in ``schemas``, default the repo's schemas/)."""
    if isinstance(headers, list):  # confluent-kafka gives [(name, bytes)], faust a dict
        headers = dict(headers)
    headers = dict(headers or {})
    try:
        raw_id = _text(headers.get(Header.ID.value))
    except UnicodeDecodeError:
        raise DecodeError(f"header {Header.ID.value!r} is not UTF-8 text: {headers.get(Header.ID.value)!r}") from None
    if not raw_id:
        raise DecodeError(f"header {Header.ID.value!r} missing; expected the outbox event id (a UUID)")
    try:
        event_id = str(uuid.UUID(raw_id.strip('"')))
    except ValueError:
        raise DecodeError(f"header {Header.ID.value!r} = {raw_id!r}; expected a UUID") from None
    if value is not None and value[:2] == AVRO_MARKER:
        from relay.schemas import SchemaRegistry
        from relay.schemas.codec import decode as avro_decode

        _version, payload = avro_decode(schemas if schemas is not None else SchemaRegistry.default(), value)
    elif value is None:
        payload = None
    else:
        try:
            payload = json.loads(value)
        except (UnicodeDecodeError, ValueError) as exc:
            raise DecodeError(f"value at {topic}/{partition}@{offset} is not JSON ({exc}): {value[:80]!r}") from None
    return Event(
        id=event_id, type=_text(headers.get(Header.TYPE.value)), key=_text(key), payload=payload,
        topic=topic, partition=partition, offset=offset, timestamp_ms=timestamp_ms, headers=headers,
    )
