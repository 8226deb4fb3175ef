"""Retry ladder and per-key parking with the real worker: a failing event of key A waits in the
retry stages while B keeps flowing; A's later events are handled after it, in order; an event
that exhausts the ladder ends in the dead-letter topic and its key moves on."""

import json
import os
import subprocess
import sys
import time
import uuid

import psycopg
import pytest
from confluent_kafka import Producer

from relay.stack.process import ManagedProcess
from relay.topics import producer_config
from tests.support.engines import BOTH, KAFKA_AND_LONG_FAUST
from tests.support.flaky_app import SCHEMA

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("engine", KAFKA_AND_LONG_FAUST, indirect=True)
def test_failing_key_is_parked_in_order_while_others_flow(stack, settings, unique, engine):
    topic = f"outbox.event.flaky{unique}"
    ids = {name: str(uuid.uuid4()) for name in
           [f"{k}{i}" for k in "AB" for i in range(1, 6)] + ["Z1", "Z2"]}
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
        conn.execute("INSERT INTO flaky_failures VALUES (%s, 2), (%s, 99)", (ids["A1"], ids["Z1"]))
    env = {**os.environ, "FLAKY_TOPIC": topic, "RELAY_RETRY_DELAYS": "1s,1s,2s", "RELAY_WORKER_METRICS_PORT": "0"}
    worker = ManagedProcess(f"worker-flaky-{unique}", settings.stack_dir / "pids" / f"worker-flaky-{unique}.pid",
                            settings.stack_dir / "logs" / "worker-flaky.log")
    worker.start([sys.executable, "-m", "relay", "worker", "tests.support.flaky_app:make_consumer"], env=env)
    try:
        producer = Producer(producer_config(settings))
        probe = str(uuid.uuid4())  # produce once the worker handles events: timings below exclude startup
        producer.produce(topic, key=b"P", value=b'{"seq": 0}', headers=[("id", probe.encode()), ("type", b"T")])
        producer.flush(30)
        deadline = time.monotonic() + 90
        while True:
            with psycopg.connect(settings.dsn) as conn:
                if conn.execute("SELECT 1 FROM flaky_effects WHERE event_id = %s", (probe,)).fetchone():
                    break
            assert time.monotonic() < deadline, "worker did not handle the probe event"
            time.sleep(0.3)
        for name in ["A1", "B1", "A2", "B2", "Z1", "A3", "B3", "Z2", "A4", "B4", "A5", "B5"]:
            producer.produce(topic, key=name[0].encode(), value=json.dumps({"seq": int(name[1])}).encode(),
                             headers=[("id", ids[name].encode()), ("type", b"T")])
        assert producer.flush(30) == 0
        want = {ids[n] for n in ids if n != "Z1"}
        deadline = time.monotonic() + 120
        while True:
            with psycopg.connect(settings.dsn) as conn:
                rows = conn.execute("SELECT event_id, key, seq FROM flaky_effects WHERE event_id = ANY(%s)"
                                    " ORDER BY handled_at", (list(ids.values()),)).fetchall()
            if {r[0] for r in rows} >= want or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert worker.pid() is not None, "the worker is still up"
    finally:
        worker.stop()
    order = [f"{key}{seq}" for _, key, seq in rows]
    assert len(order) == len(set(order)) == 11, f"each good event once: {order}"
    assert [n for n in order if n[0] == "A"] == ["A1", "A2", "A3", "A4", "A5"]
    assert [n for n in order if n[0] == "B"] == ["B1", "B2", "B3", "B4", "B5"]
    assert order.index("B5") < order.index("A1"), f"B was not held up by A's retries: {order}"
    assert "Z1" not in order and "Z2" in order
    dead = subprocess.run([sys.executable, "-m", "relay", "dlq", "list", "--topic", topic, "--json"],
                          capture_output=True, text=True, timeout=60)
    (z1,) = [d for d in json.loads(dead.stdout) if d["id"] == ids["Z1"]]
    assert z1["attempts"] == "4" and z1["error_class"] == "TimeoutError"


@pytest.mark.parametrize("engine", BOTH, indirect=True)
def test_parking_keeps_order_with_two_workers(stack, settings, unique, engine):
    """Parking state lives in a table co-partitioned with the source and the stage topics: with two
    workers (partitions split between them) each key's events are still handled in order. (A
    fresh-clone run once saw K0 handled 0,1,3,2: event 3 reached the source after its head moved
    to stage 2 while event 2 still sat in stage 1; behind records now take turns by sequence.)"""
    from relay.topics import apply_topics
    from tests.support.workers import Workers

    topic = f"outbox.event.park2w{unique}"
    apply_topics(settings, [topic])
    keys = [f"K{i}" for i in range(12)]
    ids = {(k, n): str(uuid.uuid4()) for k in keys for n in range(6)}
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
        for k in keys[::2]:  # every other key: its second event times out twice
            conn.execute("INSERT INTO flaky_failures VALUES (%s, 2)", (ids[(k, 1)],))
    workers = Workers(settings, "tests.support.flaky_app:make_consumer", f"worker-park2w-{unique}",
                      env={"FLAKY_TOPIC": topic, "RELAY_RETRY_DELAYS": "1s,1s,2s"})
    workers.start(0)
    workers.start(1)
    try:
        time.sleep(8)  # both members joined and recovered (records arriving earlier are safe too)
        producer = Producer(producer_config(settings))
        for n in range(6):
            for k in keys:
                producer.produce(topic, key=k.encode(), value=json.dumps({"seq": n}).encode(),
                                 headers=[("id", ids[(k, n)].encode()), ("type", b"T")])
        assert producer.flush(30) == 0
        deadline = time.monotonic() + 120
        while True:
            with psycopg.connect(settings.dsn) as conn:
                rows = conn.execute("SELECT event_id, key, seq FROM flaky_effects WHERE event_id = ANY(%s)"
                                    " ORDER BY handled_at", (list(ids.values()),)).fetchall()
            if len(rows) >= len(ids) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert workers.alive(0) and workers.alive(1)
    finally:
        workers.stop()
    assert len(rows) == len(ids) == len({r[0] for r in rows}), "every event handled once"
    for k in keys:
        assert [seq for _, key, seq in rows if key == k] == list(range(6)), f"key {k} out of order"
