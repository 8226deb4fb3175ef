"""commit -> Debezium EventRouter -> Kafka, read back by a plain confluent-kafka consumer.

Contract (ARCHITECTURE.md): topic outbox.event.<aggregatetype>, key = aggregateid, header id = the
outbox row id, header type, value = the payload JSON, per-aggregate order = commit order.
"""

import json
import threading

import psycopg
import pytest

from relay.outbox import write
from tests.support.kafka import read_until

pytestmark = pytest.mark.integration


def headers(msg):
    return {k: v.decode() for k, v in (msg.headers() or [])}


def test_routing_key_headers_payload_and_order(stack, settings, unique):
    aggregatetype = f"t{unique}"  # a new type: Connect creates its topic with the declared settings
    aggregates = [f"agg-{i}" for i in range(6)]
    expected = {a: [] for a in aggregates}
    payloads = {}
    errors = []

    def writer(agg):  # one connection per aggregate, interleaved with the others
        try:
            with psycopg.connect(settings.dsn) as conn:
                for seq in range(15):
                    payload = {"seq": seq, "agg": agg, "text": "Zoë ✓ 東京", "nested": {"a": [1, "x", None]}}
                    with conn.transaction():
                        eid = write(conn, aggregatetype=aggregatetype, aggregateid=agg, type=f"E{seq}",
                                    payload=payload)
                    expected[agg].append(str(eid))
                    payloads[str(eid)] = payload
        except Exception as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(a,)) for a in aggregates]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    total = sum(len(v) for v in expected.values())

    records = read_until(settings.bootstrap_servers, f"outbox.event.{aggregatetype}",
                         lambda recs: len(recs) >= total, timeout_s=90)
    ids_seen = [headers(m)["id"] for m in records]
    assert sorted(set(ids_seen)) == sorted(payloads), "every committed event reached Kafka"
    assert len(records) == total, "no duplicates without crashes"

    by_agg = {}
    for msg in records:
        h = headers(msg)
        eid = h["id"]
        assert msg.key().decode() == payloads[eid]["agg"]
        assert json.loads(msg.value()) == payloads[eid]
        assert h["type"] == f"E{payloads[eid]['seq']}"
        assert not any(k.startswith("__debezium") for k in h)
        by_agg.setdefault(msg.key().decode(), []).append((msg.partition(), msg.offset(), eid))
    for agg, recs in by_agg.items():
        assert len({p for p, _, _ in recs}) == 1, f"{agg} spread over partitions"
        assert [eid for _, _, eid in sorted(recs)] == expected[agg], f"{agg} out of commit order"


def test_null_payload_gives_a_record_without_value(stack, settings, unique, db):
    with db.transaction():
        eid = write(db, aggregatetype="order", aggregateid=f"null-{unique}", type="Empty", payload=None)
    records = read_until(settings.bootstrap_servers, "outbox.event.order",
                         lambda recs: any(headers(m).get("id") == str(eid) for m in recs))
    (msg,) = [m for m in records if headers(m).get("id") == str(eid)]
    assert msg.value() is None and msg.key().decode() == f"null-{unique}"
