"""Decoding consumed records: strict about the id header and JSON value."""

import uuid

import pytest

from relay.errors import DecodeError
from relay.handling import Event, Inbox, decode

EID = str(uuid.uuid4())


def rec(**change):
    base = dict(key=b"o-1", value=b'{"a": 1}', headers=[("id", EID.encode()), ("type", b"T")],
                topic="outbox.event.order", partition=2, offset=7)
    return {**base, **change}


def test_decodes_debezium_record():
    ev = decode(**rec())
    assert ev == Event(id=EID, type="T", key="o-1", payload={"a": 1}, topic="outbox.event.order",
                       partition=2, offset=7, headers={"id": EID.encode(), "type": b"T"})


def test_dict_headers_and_quoted_id_accepted():
    assert decode(**rec(headers={"id": f'"{EID}"'.encode()})).id == EID


@pytest.mark.parametrize("headers, match", [
    ([], "missing"), ([("id", b"nope")], "expected a UUID"), ([("id", b"\xff")], "not UTF-8"),
])
def test_bad_id_header(headers, match):
    with pytest.raises(DecodeError, match=match):
        decode(**rec(headers=headers))


def test_value_must_be_json():
    with pytest.raises(DecodeError, match="not JSON"):
        decode(**rec(value=b"\x00garbage"))


def test_null_value_is_a_null_payload():
    assert decode(**rec(value=None)).payload is None


def test_inbox_records_only_what_it_is_told():
    inbox = Inbox({})
    assert not inbox.seen(EID)
    inbox.record(EID, 1.0)
    assert inbox.seen(EID)
