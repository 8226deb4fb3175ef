"""The circuit breaker with the real worker: after N consecutive retriable failures the worker
takes no records for a while, probes with one, and closes when the downstream answers; nothing
is lost or dead-lettered on the way."""

import json
import time
import uuid

import psycopg
import pytest
from confluent_kafka import Producer

from relay.topics import apply_topics, producer_config
from tests.support.engines import KAFKA_AND_LONG_FAUST
from tests.support.flaky_app import SCHEMA
from tests.support.workers import Workers

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("engine", KAFKA_AND_LONG_FAUST, indirect=True)
def test_breaker_opens_probes_and_closes(stack, settings, unique, engine):
    topic = f"outbox.event.breaker{unique}"
    apply_topics(settings, [topic])
    ids = [str(uuid.uuid4()) for _ in range(8)]
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
        for eid in ids:  # the downstream "times out" once for each event: a streak of failures
            conn.execute("INSERT INTO flaky_failures VALUES (%s, 1)", (eid,))
    workers = Workers(settings, "tests.support.flaky_app:make_consumer", f"worker-breaker-{unique}", env={
        "FLAKY_TOPIC": topic, "RELAY_BREAKER_FAILURES": "3", "RELAY_BREAKER_OPEN_S": "2",
        "RELAY_RETRY_DELAYS": "1s,1s,1s", "RELAY_CONSUMER_MAX_IN_FLIGHT": "1"})
    workers.start()
    try:
        producer = Producer(producer_config(settings))
        for i, eid in enumerate(ids):  # distinct keys: no parking, only the breaker holds them back
            producer.produce(topic, key=f"K{i}".encode(), value=json.dumps({"seq": i}).encode(),
                             headers=[("id", eid.encode()), ("type", b"T")])
        assert producer.flush(30) == 0
        deadline = time.monotonic() + 120
        while True:
            with psycopg.connect(settings.dsn) as conn:
                rows = conn.execute("SELECT event_id, handled_at FROM flaky_effects WHERE event_id = ANY(%s)"
                                    " ORDER BY handled_at", (ids,)).fetchall()
            if len(rows) == len(ids) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        log = workers.procs[0].log_file.read_text()
    finally:
        workers.stop()
    assert sorted(r[0] for r in rows) == sorted(ids), "every event handled once, none dead-lettered"
    assert "circuit open" in log, "three consecutive retriable failures opened the circuit"
