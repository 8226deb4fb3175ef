"""The outbox contract, for every relay: routing, key, headers, payload, per-aggregate order.

topic outbox.event.<aggregatetype>; key = aggregateid; header id = outbox row id (UUID text);
headers type and aggregatetype; value = payload JSON (none for a NULL payload); all events of one
aggregate on one partition in commit order. Read back with a plain confluent-kafka consumer.
"""

import json

import pytest

from relay.verify import detect_gaps
from tests.support.kafka import event_id, read_until
from tests.support.writers import Writers

pytestmark = pytest.mark.integration


def read_all(settings, topic, ids, timeout_s=120):
    missing = set(ids)

    def done(records):
        for m in records[done.n:]:
            missing.discard(event_id(m))
        done.n = len(records)
        return not missing

    done.n = 0
    return read_until(settings.bootstrap_servers, topic, done, timeout_s)


def test_routing_key_headers_payload_and_order(relay_impl, settings, unique):
    aggregatetype = f"c{unique}"  # new type: the relay must create its topic (auto-create is off)
    payload = lambda agg, seq: {"agg": agg, "seq": seq, "text": "Zoë ✓ 東京 🚀", "nested": {"a": [1, "x", None, 2.5]}}
    w = Writers(relay_impl.dsn, aggregatetype, [f"agg-{i}" for i in range(8)], threads=4,
                per_aggregate=12, payload=payload).run()
    records = read_all(settings, f"outbox.event.{aggregatetype}", w.ids)
    report = detect_gaps(w.committed, [
        __import__("relay.verify", fromlist=["Delivered"]).Delivered(
            m.key().decode(), event_id(m), m.partition(), m.offset()) for m in records])
    assert report.ok, report.summary()
    assert report.duplicates == 0, "no duplicates without crashes"
    for m in records:
        h = {k: v.decode() for k, v in m.headers()}
        body = w.payloads[h["id"]]
        assert json.loads(m.value()) == body
        assert h["type"] == f"E{body['seq']}" and h["aggregatetype"] == aggregatetype
        assert not any(k.startswith("__debezium") for k in h), h


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
