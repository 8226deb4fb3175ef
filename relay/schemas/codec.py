"""Binary Avro for events of aggregate types declared ``avro``: Avro single-object encoding.

Wire format (Avro specification, "Single object encoding"): ``C3 01``, the 8-byte little-endian
CRC-64-AVRO fingerprint of the writer schema's canonical form, then the Avro binary body. A reader
needs no schema registry: it finds the writer schema by fingerprint among the repo's declared
versions and may resolve it to any compatible reader version.
"""

from __future__ import annotations

import io
from typing import Any

import fastavro

from relay.errors import DecodeError

MARKER = b"\xc3\x01"


def encode(version: Any, payload: Any) -> bytes:
    """``payload`` must already be valid for ``version`` (the registry validates first)."""
    out = io.BytesIO()
    out.write(MARKER)
    out.write(bytes.fromhex(version.fingerprint))
    fastavro.schemaless_writer(out, version.schema, payload)
    return out.getvalue()


def decode(registry: Any, data: bytes, reader: Any = None) -> tuple[Any, Any]:
    """(writer version, payload) of single-object-encoded ``data``; DecodeError when it is not one
    or its schema is not declared here. ``reader``: a compatible version to resolve to."""
    if len(data) < 10 or data[:2] != MARKER:
        raise DecodeError(f"not Avro single-object encoding (expected marker C3 01, got {data[:2].hex() or 'nothing'})")
    fingerprint = data[2:10].hex()
    writer = registry.by_fingerprint(fingerprint)
    if writer is None:
        raise DecodeError(f"Avro writer schema with fingerprint {fingerprint} is not declared under {registry.root}")
    try:
        payload = fastavro.schemaless_reader(io.BytesIO(data[10:]), writer.schema,
                                             None if reader is None else reader.schema)
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt body
        raise DecodeError(f"Avro body does not decode with {writer.ref}: {exc}") from None
    return writer, payload
