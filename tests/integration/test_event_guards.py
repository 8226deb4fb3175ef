"""Prevention at the source, on the real stack: an event over RELAY_MAX_EVENT_BYTES and an
aggregate type whose topic Kafka would refuse never get into the outbox (writer and raw SQL), and
an event just under the limit passes every hop (writer, database, Debezium's producer, the topic)."""

import uuid

import psycopg
import pytest

import relay.outbox
from relay.errors import InvalidEvent
from tests.support.kafka import read_messages

pytestmark = pytest.mark.integration

RAW_INSERT = ("INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) "
              "VALUES (%s, %s, 'k', 'T', %s::jsonb)")


def rows(conn, aggregatetype):
    return conn.execute("SELECT count(*) FROM outbox WHERE aggregatetype = %s", (aggregatetype,)).fetchone()[0]


def test_oversized_event_refused_by_writer_naming_size_and_limit(db, settings, unique):
    with pytest.raises(InvalidEvent) as err:
        with db.transaction():
            relay.outbox.write(db, aggregatetype=f"big{unique}", aggregateid="k", type="T",
                               payload={"blob": "x" * 2 * 2**20})
    assert err.value.field == "payload"
    assert "2,097," in str(err.value) and f"{settings.max_event_bytes:,} bytes" in str(err.value)
    assert rows(db, f"big{unique}") == 0


def test_oversized_event_refused_by_raw_sql(db, settings, unique):
    with pytest.raises(psycopg.errors.CheckViolation) as err:
        with db.transaction():
            db.execute(RAW_INSERT, (uuid.uuid4(), f"big{unique}", '{"blob": "%s"}' % ("x" * 2 * 2**20)))
    assert err.value.diag.constraint_name == "outbox_event_size"
    assert len(str(err.value)) < 2000  # Postgres shows the failing row's values cut short
    assert rows(db, f"big{unique}") == 0


def test_colliding_aggregate_types_refused_by_writer_and_raw_sql(db, unique):
    with db.transaction():
        relay.outbox.write(db, aggregatetype=f"c{unique}_x", aggregateid="k", type="T", payload={})
    with pytest.raises(InvalidEvent) as err:
        with db.transaction():
            relay.outbox.write(db, aggregatetype=f"c{unique}.x", aggregateid="k", type="T", payload={})
    assert err.value.field == "aggregatetype" and err.value.value == f"c{unique}.x"
    assert f"outbox.event.c{unique}_x" in str(err.value)
    with pytest.raises(psycopg.errors.CheckViolation) as raw:
        with db.transaction():
            db.execute(RAW_INSERT, (uuid.uuid4(), f"c{unique}.x", "{}"))
    assert raw.value.diag.constraint_name == "outbox_topic_collision"
    assert rows(db, f"c{unique}.x") == 0
    with db.transaction():  # the first one stays usable
        relay.outbox.write(db, aggregatetype=f"c{unique}_x", aggregateid="k", type="T", payload={})
    assert rows(db, f"c{unique}_x") == 2


def test_a_changed_limit_is_applied_by_migrate(db, settings, unique):
    from relay.outbox import migrate

    try:
        migrate(db, max_event_bytes=2048)
        with pytest.raises(psycopg.errors.CheckViolation):
            with db.transaction():
                db.execute(RAW_INSERT, (uuid.uuid4(), f"mid{unique}", '{"blob": "%s"}' % ("x" * 3000)))
        with pytest.raises(InvalidEvent, match="outbox_event_size"):  # a writer told a larger limit
            with db.transaction():
                relay.outbox.write(db, aggregatetype=f"mid{unique}", aggregateid="k", type="T",
                                   payload={"blob": "x" * 3000}, max_event_bytes=10_000)
    finally:
        migrate(db, max_event_bytes=settings.max_event_bytes)
    with db.transaction():
        db.execute(RAW_INSERT, (uuid.uuid4(), f"mid{unique}", '{"blob": "%s"}' % ("x" * 3000)))


def test_event_just_under_the_limit_reaches_kafka(db, settings, unique):
    """The Kafka default (1 MiB topic, 1 MiB producer request) would refuse it once headers and
    framing are added to a 1,000,000-byte event: the topic Debezium creates and its producer are
    configured from the same setting."""
    aggregatetype = f"near{unique}"
    payload = {"blob": "x" * (settings.max_event_bytes - 200)}
    small = []
    with db.transaction():
        big = relay.outbox.write(db, aggregatetype=aggregatetype, aggregateid="k", type="T", payload=payload)
        small.append(relay.outbox.write(db, aggregatetype=aggregatetype, aggregateid="k", type="T", payload={}))
    msgs = read_messages(settings.bootstrap_servers, f"outbox.event.{aggregatetype}", {str(big), *map(str, small)},
                         timeout_s=60)
    sizes = {dict(m.headers())["id"].decode(): len(m.value()) for m in msgs}
    assert sizes.get(str(big), 0) > settings.max_event_bytes - 300
