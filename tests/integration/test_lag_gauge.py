"""relay_consumer_lag counts records, not offsets: on a topic written in transactions (as Debezium's
exactly-once source writes), a caught-up worker reads 0 on every partition although each ends in
a transaction marker; a record waiting in a retry stage still shows as 1 until it is handled."""

import re
import socket
import time
import urllib.request
import uuid

import psycopg
import pytest
from confluent_kafka import Producer

from relay.topics import producer_config
from tests.support.engines import BOTH
from tests.support.flaky_app import flaky_workers
from tests.support.workers import Feed

pytestmark = pytest.mark.integration

LAG = re.compile(r'^relay_consumer_lag\{partition="(\d+)",topic="([^"]+)"\} (\S+)$', re.MULTILINE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def lags(port: int) -> dict[tuple[str, int], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(topic, int(p)): float(v) for p, topic, v in LAG.findall(text)}


def handled(settings, ids) -> int:
    with psycopg.connect(settings.dsn) as conn:
        return conn.execute("SELECT count(DISTINCT event_id) FROM flaky_effects WHERE event_id = ANY(%s)",
                            (list(ids),)).fetchone()[0]


def wait_for(what: str, check, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.5)


def source_lags(port: int, topic: str) -> dict[int, float]:
    return {p: v for (t, p), v in lags(port).items() if t == topic}


@pytest.mark.parametrize("engine", BOTH, indirect=True)
def test_lag_is_zero_when_caught_up_on_a_transactional_topic_and_shows_a_waiting_record(
        stack, settings, unique, engine):
    topic, stage = f"outbox.event.lag{unique}", f"outbox.event.lag{unique}.retry.1"
    port = free_port()
    workers = flaky_workers(settings, topic, f"worker-lag-{unique}",
                            env={"RELAY_RETRY_DELAYS": "20s", "RELAY_WORKER_METRICS_PORT": str(port)})
    workers.start(0)
    try:
        wait_for("metrics served", lambda: _served(port), 60)
        # 300 records in transactions of 7: every partition ends in a transaction marker
        feed = Feed(settings, topic, count=300, keys=30, rate=500, per_transaction=7).start().join()
        wait_for("all handled", lambda: handled(settings, feed.ids) == len(feed.ids), 90)
        wait_for("lag 0 on every source partition",
                 lambda: source_lags(port, topic) == dict.fromkeys(range(settings.topic_partitions), 0.0), 10)
        time.sleep(2)
        assert source_lags(port, topic) == dict.fromkeys(range(settings.topic_partitions), 0.0), "it stays 0"

        # real lag still shows: a record waiting 20 s in retry stage 1 is 1 record behind there
        waiting = str(uuid.uuid4())
        with psycopg.connect(settings.dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO flaky_failures VALUES (%s, 1)", (waiting,))
        producer = Producer(producer_config(settings))
        producer.produce(topic, key=b"W", value=b'{"seq": 0}', headers=[("id", waiting.encode()), ("type", b"T")])
        assert producer.flush(30) == 0
        wait_for("the record waits in stage 1", lambda: sum(source_lags(port, stage).values()) == 1, 15)
        wait_for("handled when due", lambda: handled(settings, [waiting]) == 1, 40)
        wait_for("stage lag back to 0", lambda: sum(source_lags(port, stage).values()) == 0, 10)
        assert sum(source_lags(port, topic).values()) == 0
    finally:
        workers.stop()


def _served(port: int) -> bool:
    try:
        lags(port)
        return True
    except OSError:
        return False
