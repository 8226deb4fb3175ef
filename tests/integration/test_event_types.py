"""A consumer registered for some event types: the others are acknowledged without reaching
the handler (and are not dead letters: they are another consumer's business)."""

import json
import time
import uuid

import psycopg
import pytest
from confluent_kafka import Producer

from relay.headers import dlq_topic
from relay.topics import producer_config
from tests.support.engines import KAFKA_AND_LONG_FAUST
from tests.support.flaky_app import flaky_workers
from tests.support.kafka import read_until

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("engine", KAFKA_AND_LONG_FAUST, indirect=True)
def test_only_registered_event_types_reach_the_handler(stack, settings, unique, engine):
    topic = f"outbox.event.types{unique}"
    workers = flaky_workers(settings, topic, f"worker-types-{unique}", env={"FLAKY_TYPES": "OrderPlaced,OrderPaid"})
    workers.start()
    try:
        producer = Producer(producer_config(settings))
        sent = {}
        for i, etype in enumerate(["OrderPlaced", "AuditNoted", "OrderPaid", "AuditNoted", "OrderPlaced"]):
            eid = str(uuid.uuid4())
            sent[eid] = etype
            producer.produce(topic, key=b"K", value=json.dumps({"seq": i}).encode(),
                             headers=[("id", eid.encode()), ("type", etype.encode())])
        assert producer.flush(30) == 0
        wanted = {eid for eid, t in sent.items() if t != "AuditNoted"}
        deadline = time.monotonic() + 90
        while True:
            with psycopg.connect(settings.dsn) as conn:
                got = {r[0] for r in conn.execute("SELECT event_id FROM flaky_effects WHERE event_id = ANY(%s)",
                                                  (list(sent),))}
            if got >= wanted or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        time.sleep(2)  # the ignored ones were before the last wanted one on the same key
        with psycopg.connect(settings.dsn) as conn:
            got = {r[0] for r in conn.execute("SELECT event_id FROM flaky_effects WHERE event_id = ANY(%s)",
                                              (list(sent),))}
    finally:
        workers.stop()
    assert got == wanted
    dead = read_until(settings.bootstrap_servers, dlq_topic(topic), lambda recs: False, timeout_s=2)
    assert dead == [], "ignored types are not dead letters"
