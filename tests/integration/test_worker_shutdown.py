"""SIGTERM does not wait out retry delays: a worker holding an event in a 65 s retry stage exits
within seconds; the event stays in Kafka (its stage offset uncommitted) and the restarted worker
handles it exactly once when it is due."""

import json
import time
import uuid

import psycopg
import pytest
from confluent_kafka import Producer

from relay.topics import producer_config
from tests.support.engines import KAFKA_AND_LONG_FAUST
from tests.support.flaky_app import flaky_workers

pytestmark = pytest.mark.integration

DELAY_S = 65


def effects(settings, event_id: str) -> int:
    with psycopg.connect(settings.dsn) as conn:
        return conn.execute("SELECT count(*) FROM flaky_effects WHERE event_id = %s", (event_id,)).fetchone()[0]


def wait_for(what: str, check, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.3)


@pytest.mark.parametrize("engine", KAFKA_AND_LONG_FAUST, indirect=True)
def test_sigterm_does_not_wait_for_a_retry_delay_and_the_event_is_handled_once_after_restart(
        stack, settings, unique, engine):
    topic = f"outbox.event.shutdown{unique}"
    workers = flaky_workers(settings, topic, f"worker-shutdown-{unique}", env={"RELAY_RETRY_DELAYS": f"{DELAY_S}s"})
    probe, waiting = str(uuid.uuid4()), str(uuid.uuid4())
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO flaky_failures VALUES (%s, 1)", (waiting,))  # its first attempt fails
    producer = Producer(producer_config(settings))

    def produce(event_id: str, key: bytes) -> None:
        producer.produce(topic, key=key, value=json.dumps({"seq": 1}).encode(),
                         headers=[("id", event_id.encode()), ("type", b"T")])
        assert producer.flush(30) == 0

    workers.start(0)
    try:
        produce(probe, b"P")
        wait_for("the worker handles the probe", lambda: effects(settings, probe) == 1, 90)
        produce(waiting, b"W")
        wait_for("the first attempt failed into stage 1",
                 lambda: f"attempt 1 of {waiting} failed" in workers.log(0), 30)
        time.sleep(3)  # the stage agent took it and waits for its due time
        took = workers.stop(0, grace_s=30)
        assert took < 10, f"SIGTERM took {took:.1f} s: the worker waited for the retry delay"
        assert effects(settings, waiting) == 0
        restarted = time.monotonic()
        workers.start(0)
        wait_for("the restarted worker handles it when due", lambda: effects(settings, waiting) >= 1, DELAY_S + 60)
        due_after = time.monotonic() - restarted
        time.sleep(5)  # a second copy would show up meanwhile
        assert workers.alive(0)
    finally:
        workers.stop()
    print(f"SIGTERM with a record waiting in a {DELAY_S} s stage: exited in {took:.1f} s; "
          f"handled {due_after:.0f} s after the restart")
    assert effects(settings, waiting) == 1, "handled exactly once"
    assert due_after > 10, f"handled {due_after:.0f} s after the restart: before it was due"
