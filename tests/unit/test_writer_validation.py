"""Outbox writer input validation: every bad field is named, with its value and the expectation.

(That nothing reaches Postgres is proven against the real database in tests/integration.)
"""

import json
import math
import uuid

import pytest

from relay.errors import InvalidEvent
from relay.outbox.writer import OutboxEvent, validate

GOOD = dict(aggregatetype="order", aggregateid="o-1", type="OrderPlaced", payload={"a": 1})


def bad(**change):
    with pytest.raises(InvalidEvent) as info:
        validate(**{**GOOD, **change})
    return info.value


@pytest.mark.parametrize("field", ["aggregatetype", "aggregateid", "type"])
@pytest.mark.parametrize("value", [None, "", "   ", 42])
def test_required_text_fields(field, value):
    err = bad(**{field: value})
    assert err.field == field and err.value == value
    assert field in str(err) and "non-empty string" in str(err)


def test_aggregatetype_must_be_topic_safe():
    err = bad(aggregatetype="order events")
    assert err.field == "aggregatetype" and "[A-Za-z0-9._-]" in err.expected


@pytest.mark.parametrize("payload", [{1, 2}, object(), {"x": math.nan}, b"bytes"])
def test_payload_must_be_json_serialisable(payload):
    err = bad(payload=payload)
    assert err.field == "payload" and "JSON-serialisable" in str(err)


def test_headers_must_be_str_to_str():
    assert bad(headers={"traceparent": 1}).field == "headers"


def test_event_id_must_be_uuid():
    assert bad(event_id="not-a-uuid").field == "event_id"


def test_valid_event_keeps_unicode_and_null_payload():
    eid, text, headers = validate(**{**GOOD, "payload": {"name": "Zoë ✓"}, "headers": {"traceparent": "t"}})
    assert isinstance(eid, uuid.UUID) and "Zoë ✓" in text and headers == '{"traceparent":"t"}'
    _, text, _ = validate(**{**GOOD, "payload": None})
    assert text is None


def test_invalid_event_is_a_value_error_and_not_retriable():
    err = bad(aggregateid="")
    assert isinstance(err, ValueError) and err.retriable is False


def test_event_over_the_size_limit_is_refused_before_sql_naming_size_and_limit():
    from relay.outbox.writer import OutboxEvent, _rows

    big = OutboxEvent("order", "k", "T", {"blob": "x" * 5000}, headers={"h": "v"})
    with pytest.raises(InvalidEvent) as err:
        _rows([big], False, None, max_event_bytes=4000)
    assert err.value.field == "payload"
    assert "5,0" in str(err.value) and "at most 4,000 bytes" in str(err.value)
    (ok,) = _rows([big], False, None, max_event_bytes=6000)  # payload + key + headers fit
    assert ok.id is not None


def test_consecutive_plain_inserts_go_out_as_one_multi_row_insert_in_order():
    """The writer's conversation (sans I/O): runs of key-less rows for one outbox table are one
    multi-row INSERT (aggregate types may differ; chunks of ROWS_PER_INSERT); a row with an
    idempotency key ends the run."""
    from relay.outbox import writer
    from relay.outbox.writer import FETCH, ONE, _rows, _steps

    def ev(agg: str, key: str | None = None) -> OutboxEvent:
        return OutboxEvent(agg, "a-1", "T", {"n": 1}, idempotency_key=key)

    def rows_in(sql, params):
        return len(json.loads(params[0])) if "jsonb_to_recordset" in sql else sql.count("(%s, %s")

    def talk(steps):  # (mode, rows in the statement) per step, and the results
        seen, reply = [], None
        try:
            while True:
                sql, params, mode = steps.send(reply)
                seen.append((mode, rows_in(sql, params)))
                reply = ("inserted",) if mode == FETCH else None
        except StopIteration as done:
            return seen, done.value

    rows = _rows([ev("x"), ev("x"), ev("x", key="k"), ev("x"), ev("y"), ev("y"), ev("y", key="k"),
                  ev("y")], False, None)
    seen, results = talk(_steps(rows, delete_after=False))
    assert seen == [(ONE, 2), (FETCH, 1), (ONE, 3), (FETCH, 1), (ONE, 1)]
    assert [r.id for r in results] == [r.id for r in rows], "one result per event, in order"

    many = _rows([ev("x")] * (writer.ROWS_PER_DOCUMENT + 3), False, None)
    seen, _ = talk(_steps(many, delete_after=False))
    assert seen == [(ONE, writer.ROWS_PER_DOCUMENT), (ONE, 3)], "jsonb rows: JSON documents"
    doc = json.loads(next(_steps(many[:1], delete_after=False))[1][0])
    assert doc == [{"id": str(many[0].id), "aggregatetype": "x", "aggregateid": "a-1", "type": "T",
                    "payload": {"n": 1}, "headers": None, "payload_schema": None}]
    values = writer._Sql.for_table("t", jsonb=False)  # bytea (Avro) rows: multi-row VALUES
    assert [rows_in(sql, p) for sql, p, _ in values.plain_inserts(many[:writer.ROWS_PER_INSERT + 3])] == [
        writer.ROWS_PER_INSERT, 3]

    deleting = _steps(_rows([ev("x"), ev("x")], True, None), delete_after=True)
    first = next(deleting)
    second = deleting.send(None)
    assert (first[2], second[2]) == (ONE, ONE) and "DELETE" in second[0] and len(second[1][0]) == 2
