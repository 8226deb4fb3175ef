"""The outbox contract, for every relay: routing, key, headers, payload, per-aggregate order.

topic outbox.event.<aggregatetype>; key = aggregateid; header id = outbox row id (UUID text);
headers type and aggregatetype; value = payload JSON (none for a NULL payload); all events of one
aggregate on one partition in commit order. Read back with a plain confluent-kafka consumer.
"""

import json

import pytest

from relay.verify import Delivered, detect_gaps
from tests.support.kafka import event_id, read_messages
from tests.support.writers import Writers

pytestmark = pytest.mark.integration


def read_all(settings, topic, ids, timeout_s=120):
    return read_messages(settings.bootstrap_servers, topic, set(ids), timeout_s)


def test_routing_key_headers_payload_and_order(relay_impl, settings, unique):
    aggregatetype = f"c{unique}"  # new type: the relay must create its topic (auto-create is off)
    def payload(agg, seq):
        return {"agg": agg, "seq": seq, "text": "Zoë ✓ 東京 🚀", "nested": {"a": [1, "x", None, 2.5]}}

    w = Writers(relay_impl.dsn, aggregatetype, [f"agg-{i}" for i in range(8)], threads=4,
                per_aggregate=12, payload=payload).run()
    records = read_all(settings, f"outbox.event.{aggregatetype}", w.ids)
    report = detect_gaps(w.committed, [Delivered(m.key().decode(), event_id(m), m.partition(), m.offset())
                                       for m in records])
    assert report.ok, report.summary()
    assert report.duplicates == 0, "no duplicates without crashes"
    for m in records:
        assert [k for k, _ in m.headers()] == ["id", "type", "aggregatetype", "payload-schema"]
        h = {k: v.decode() for k, v in m.headers() if v is not None}
        body = w.payloads[h["id"]]
        assert json.loads(m.value()) == body
        assert h["type"] == f"E{body['seq']}" and h["aggregatetype"] == aggregatetype
        assert dict(m.headers())["payload-schema"] is None, "schemaless event: null payload-schema header"


@pytest.mark.parametrize("payload, expected_value", [
    (None, None), ({}, b"{}"), ([], b"[]"), ("", b'""'), ("x" * 150_000, None),
], ids=["null", "empty-object", "empty-array", "empty-string", "150KB-toasted"])
def test_null_empty_and_large_payloads(relay_impl, settings, unique, payload, expected_value):
    aggregatetype = f"p{unique}"
    w = Writers(relay_impl.dsn, aggregatetype, ["only"], threads=1, per_aggregate=1,
                payload=lambda agg, seq: payload).run()
    (eid,) = w.ids
    (msg,) = [m for m in read_all(settings, f"outbox.event.{aggregatetype}", w.ids) if event_id(m) == eid]
    assert msg.key() == b"only"
    if payload is None:
        assert msg.value() is None, "NULL payload: a record without value (tombstones only when asked for)"
    elif expected_value is None:
        assert json.loads(msg.value()) == payload
    else:
        assert msg.value() == expected_value


def test_declared_schema_travels_as_payload_schema_header(relay_impl, settings, unique, tmp_path):
    import psycopg

    from relay.errors import InvalidEvent
    from relay.outbox import write
    from relay.schemas import SchemaRegistry

    aggregatetype = f"s{unique}"
    folder = tmp_path / aggregatetype / "Shipped"
    folder.mkdir(parents=True)
    (folder / "v1.avsc").write_text(json.dumps({"type": "record", "name": "Shipped", "fields": [
        {"name": "parcel", "type": "string"}, {"name": "grams", "type": "int"}]}))
    registry = SchemaRegistry.load(tmp_path)
    with psycopg.connect(relay_impl.dsn) as conn:
        with pytest.raises(InvalidEvent) as bad:
            write(conn, aggregatetype=aggregatetype, aggregateid="p1", type="Shipped",
                  payload={"parcel": "p1", "grams": "heavy"}, schemas=registry)
        assert bad.value.field == "payload.grams" and bad.value.expected == "int"
        conn.rollback()
        with conn.transaction():
            eid = write(conn, aggregatetype=aggregatetype, aggregateid="p1", type="Shipped",
                        payload={"parcel": "p1", "grams": 250}, schemas=registry)
        assert conn.execute("SELECT count(*) FROM outbox WHERE aggregatetype = %s",
                            (aggregatetype,)).fetchone()[0] == 1
    (msg,) = read_all(settings, f"outbox.event.{aggregatetype}", {str(eid)})
    assert dict(msg.headers())["payload-schema"] == f"{aggregatetype}/Shipped/v1".encode()
    assert json.loads(msg.value()) == {"parcel": "p1", "grams": 250}


def test_avro_aggregate_type_travels_as_single_object_encoded_bytes(relay_impl, settings, unique, tmp_path):
    import psycopg

    from relay.outbox import write
    from relay.schemas import SchemaRegistry
    from relay.schemas.codec import decode

    aggregatetype = f"av{unique}"
    (tmp_path / aggregatetype / "Paid").mkdir(parents=True)
    (tmp_path / aggregatetype / "format").write_text("avro\n")
    (tmp_path / aggregatetype / "Paid" / "v1.avsc").write_text(json.dumps({
        "type": "record", "name": "Paid", "fields": [
            {"name": "cents", "type": "long"}, {"name": "note", "type": ["null", "string"], "default": None},
            {"name": "tags", "type": {"type": "array", "items": "string"}}]}))
    registry = SchemaRegistry.load(tmp_path)
    payloads = [{"cents": 2**40, "note": "Zoë ✓", "tags": ["a", "b"]}, {"cents": -1, "note": None, "tags": []}]
    with psycopg.connect(relay_impl.dsn) as conn, conn.transaction():
        ids = [str(write(conn, aggregatetype=aggregatetype, aggregateid="acct-1", type="Paid", payload=p,
                         schemas=registry)) for p in payloads]
    records = read_all(settings, f"outbox.event.{aggregatetype}", set(ids))
    assert [event_id(m) for m in records] == ids, "both events, in commit order"
    for msg, expected in zip(records, payloads, strict=True):
        assert msg.value()[:2] == b"\xc3\x01", "Avro single-object encoding"
        version, payload = decode(registry, msg.value())
        assert payload == expected and version.ref == f"{aggregatetype}/Paid/v1"
        assert dict(msg.headers())["payload-schema"] == version.ref.encode()
        assert msg.key() == b"acct-1"
