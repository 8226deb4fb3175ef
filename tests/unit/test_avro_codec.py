"""Binary Avro (single-object encoding) and the per-aggregate-type format declaration."""

import json

import pytest

from relay.errors import ConfigError, DecodeError, InvalidEvent
from relay.outbox.writer import OutboxEvent, _rows
from relay.schemas import SchemaRegistry
from relay.schemas.codec import decode, encode

V1 = {"type": "record", "name": "Paid", "fields": [{"name": "cents", "type": "long"}]}
V2 = {"type": "record", "name": "Paid", "fields": [{"name": "cents", "type": "long"},
                                                   {"name": "note", "type": ["null", "string"], "default": None}]}


def registry(tmp_path, fmt="avro", versions=(V1, V2)):
    folder = tmp_path / "pay" / "Paid"
    folder.mkdir(parents=True)
    for n, schema in enumerate(versions, 1):
        (folder / f"v{n}.avsc").write_text(json.dumps(schema))
    if fmt is not None:
        (tmp_path / "pay" / "format").write_text(fmt)
    return SchemaRegistry.load(tmp_path)


def test_round_trip_and_resolution_to_a_newer_reader(tmp_path):
    reg = registry(tmp_path)
    v1, v2 = reg.versions("pay", "Paid")
    data = encode(v1, {"cents": 5})
    assert data[:2] == b"\xc3\x01" and data[2:10] == bytes.fromhex(v1.fingerprint)
    assert decode(reg, data) == (v1, {"cents": 5})
    assert decode(reg, data, reader=v2)[1] == {"cents": 5, "note": None}


@pytest.mark.parametrize("data, match", [(b'{"cents": 5}', "marker"),
                                         (b"\xc3\x01" + b"\x00" * 8 + b"\x02", "not declared")])
def test_undecodable_bytes_name_the_reason(tmp_path, data, match):
    with pytest.raises(DecodeError, match=match):
        decode(registry(tmp_path), data)


def test_format_file(tmp_path):
    assert registry(tmp_path).format("pay") == "avro" and registry(tmp_path / "x", fmt=None).format("pay") == "json"
    with pytest.raises(ConfigError, match="payload format 'protobuf'"):
        registry(tmp_path / "y", fmt="protobuf")


def test_avro_aggregate_rejects_undeclared_event_types_before_sql(tmp_path):
    reg = registry(tmp_path)
    with pytest.raises(InvalidEvent) as err:
        _rows([OutboxEvent("pay", "a", "Refunded", {"cents": 1})], False, reg)
    assert err.value.field == "type" and "declared avro" in err.value.expected
    (row,) = _rows([OutboxEvent("pay", "a", "Paid", {"cents": 1, "note": "x"})], False, reg)
    assert row.sql.insert.startswith("INSERT INTO outbox_avro") and row.params[4][:2] == b"\xc3\x01"
