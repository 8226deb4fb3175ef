"""The Faust worker against bad input on the real stack: a poison record among 10,000 good ones
goes to the dead-letter topic with its reason, the good ones are all handled, the worker stays
up; `relay dlq` lists and replays it; a replayed event that was already handled is skipped."""

import json
import os
import subprocess
import sys
import time
import uuid

import psycopg
import pytest
from confluent_kafka import Producer

from relay.examples.orders import TOPIC
from relay.headers import dlq_topic
from relay.stack.process import ManagedProcess
from relay.topics import apply_topics, producer_config

pytestmark = pytest.mark.integration
GOOD = 10_000


def relay(*args):
    return subprocess.run([sys.executable, "-m", "relay", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def worker(stack, settings):
    from relay.examples.orders import ensure_schema

    with psycopg.connect(settings.dsn) as conn:
        ensure_schema(conn)
    apply_topics(settings, [TOPIC, dlq_topic(TOPIC)])
    proc = ManagedProcess("worker-faults", settings.stack_dir / "pids" / "worker-faults.pid",
                          settings.stack_dir / "logs" / "worker-faults.log")
    # no metrics endpoint: the default port may belong to another worker of the test run
    proc.start([sys.executable, "-m", "relay", "worker", "orders"],
               env={**os.environ, "RELAY_WORKER_METRICS_PORT": "0"})
    # wait until the worker handles events, so the test's timeouts measure handling, not startup
    # (records arriving during startup are safe: tests/integration/test_worker_restarts.py)
    probe = f"probe-{uuid.uuid4().hex[:8]}"
    producer = Producer(producer_config(settings))
    producer.produce(TOPIC, key=probe.encode(),
                     value=json.dumps({"run_id": probe, "order_id": probe, "seq": 0}).encode(),
                     headers=[("id", str(uuid.uuid4()).encode()), ("type", b"Probe")])
    producer.flush(30)
    wait(lambda: effects(settings, probe)[0] >= 1, 90, "the worker to handle a probe event")
    yield proc
    proc.stop()


def effects(settings, run_id):
    with psycopg.connect(settings.dsn) as conn:
        return conn.execute("SELECT count(*), count(DISTINCT event_id) FROM demo_order_effects WHERE run_id = %s",
                            (run_id,)).fetchone()


def wait(cond, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_poison_among_good_records_goes_to_dlq_and_worker_stays_up(worker, settings, unique):
    run_id = f"faults-{unique}"
    producer = Producer(producer_config(settings))
    poison_id, no_id_key = str(uuid.uuid4()), f"{run_id}-noid"
    for i in range(GOOD):
        if i == GOOD // 2:
            producer.produce(TOPIC, key=f"{run_id}-poison".encode(), value=b"\x00not json{",
                             headers=[("id", poison_id.encode()), ("type", b"OrderPlaced")])
            producer.produce(TOPIC, key=no_id_key.encode(), value=b"{}", headers=[("type", b"OrderPlaced")])
        order = f"{run_id}-{i % 500}"
        producer.produce(TOPIC, key=order.encode(), headers=[("id", str(uuid.uuid4()).encode()), ("type", b"OrderX")],
                         value=json.dumps({"run_id": run_id, "order_id": order, "seq": i}).encode())
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0

    wait(lambda: effects(settings, run_id)[1] == GOOD, 240, f"{GOOD} good events to be handled")
    assert effects(settings, run_id) == (GOOD, GOOD), "each good event handled exactly once"
    assert worker.pid() is not None, "the worker survived the poison records"

    listed = relay("dlq", "list", "--topic", TOPIC, "--json")
    assert listed.returncode == 0, listed.stderr
    dead = json.loads(listed.stdout)
    [poison] = [d for d in dead if d["id"] == poison_id]
    assert poison["error_class"] == "DecodeError" and "not JSON" in poison["error"]
    assert poison["original"].startswith(TOPIC + "/")
    assert any(d["key"] == no_id_key and "missing" in d["error"] for d in dead)  # no id: found by key

    again = relay("dlq", "replay", "--topic", TOPIC, "--id", poison_id, "--json")
    assert again.returncode == 0, again.stderr and json.loads(again.stdout)["replayed"] == 1

    def replayed_poison_dead_again():
        out = json.loads(relay("dlq", "list", "--topic", TOPIC, "--json").stdout)
        return [d["replays"] for d in out if d["id"] == poison_id] == [0, 1]
    wait(replayed_poison_dead_again, 60, "the replayed poison record to be dead-lettered again")


def test_replaying_an_already_handled_event_is_skipped_by_the_inbox(worker, settings, unique):
    from relay.handling.dlq import dead_letter_headers

    run_id, eid = f"replay-{unique}", str(uuid.uuid4())
    key, value = f"{run_id}-1".encode(), json.dumps({"run_id": run_id, "order_id": f"{run_id}-1", "seq": 1}).encode()
    producer = Producer(producer_config(settings))
    producer.produce(TOPIC, key=key, value=value, headers=[("id", eid.encode()), ("type", b"OrderPlaced")])
    producer.flush(30)
    # the OrderPlaced and the OrderConfirmed its handler wrote through tx.outbox
    wait(lambda: effects(settings, run_id)[0] == 2, 60, "the event and its confirmation to be handled")
    # a dead letter of the same event (as if an earlier attempt had failed), then replayed
    producer.produce(dlq_topic(TOPIC), key=key, value=value, headers=dead_letter_headers(
        [("id", eid.encode()), ("type", b"OrderPlaced")], topic=TOPIC, partition=0, offset=0,
        error=TimeoutError("db slow"), attempts=5))
    producer.flush(30)
    assert relay("dlq", "replay", "--topic", TOPIC, "--id", eid).returncode == 0
    time.sleep(5)
    assert effects(settings, run_id) == (2, 2), "the replay was skipped, not handled (nor confirmed) twice"
