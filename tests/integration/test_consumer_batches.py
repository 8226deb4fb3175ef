"""The Postgres inbox in batches on the real stack: SIGKILLs mid-batch, poison records and
failing events in the middle of batches, lanes and retry parking, and a consumer that publishes
through tx.outbox. Afterwards every effect exists exactly once, per key in production order,
every follow-up event exactly once, and every poison record in the dead-letter topic with its
reason; the worker's metrics show that records were committed in batches."""

import time
import urllib.request

import psycopg
import pytest

from relay.bench.worker_proc import free_port
from relay.headers import Header, dlq_topic
from relay.topics import apply_topics
from tests.support.effects_app import check_effects, prepare
from tests.support.engines import FAUST_IN_LONG_RUNS
from tests.support.kafka import read_until
from tests.support.workers import Feed, Workers

pytestmark = pytest.mark.integration
APP = "tests.support.effects_app:make_consumer"


def metric(port: int, name: str, topic: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(f'{name}{{topic="{topic}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def echoes(settings, aggregatetype: str) -> list[str]:
    with psycopg.connect(settings.dsn) as conn:
        return [r[0] for r in conn.execute("SELECT payload->>'source' FROM outbox WHERE aggregatetype = %s",
                                           (aggregatetype,))]


HANDLER_ENV = {"batch": {"EFFECTS_BATCH_HANDLER": "200"}, "per-event": {"RELAY_CONSUMER_BATCH_SIZE": "200"},
               "one-by-one": {}}


# Faust engine: one run with RELAY_CONSUMER_BATCH_SIZE=200 (2026-11-29) lost 1 of 3,980 events (the
# first of its key, early in a partition, no watchdog or gap log), not explained; that engine now
# refuses batches (relay.consume._faust.worker.refuse_batches), so its variant here runs one by one.
@pytest.mark.parametrize("engine, handler", [
    ("kafka", "per-event"), ("kafka", "batch"),
    pytest.param("faust", "one-by-one", marks=FAUST_IN_LONG_RUNS.marks)], indirect=["engine"])
def test_kills_poison_and_retries_mid_batch_effects_and_follow_ups_exactly_once(stack, settings, unique, engine,
                                                                                handler):
    """``handler``: per-event handlers in batch transactions (RELAY_CONSUMER_BATCH_SIZE), a
    batch handler (``batch=200``: one call per list; a list with a failing event runs again event
    by event), or (Faust) one event per transaction."""
    topic, echo = f"outbox.event.batch{unique}", f"batchecho{unique}"
    apply_topics(settings, [topic])
    prepare(settings.dsn)
    port = free_port()
    workers = Workers(settings, APP, f"worker-batch-{unique}", env={
        "EFFECTS_TOPIC": topic, "EFFECTS_DELAY_MS": "1", "EFFECTS_FLAKY_EVERY": "25", "EFFECTS_ECHO": echo,
        "EFFECTS_SEND": "1",
        "RELAY_CONSUMER_CONCURRENCY": "4", "RELAY_RETRY_DELAYS": "1s,2s", "RELAY_WORKER_METRICS_PORT": str(port),
        **HANDLER_ENV[handler],
        # planned failures are not a sick downstream: keep the circuit out of it (tested on its own)
        "RELAY_BREAKER_FAILURES": "100000"})
    feed = Feed(settings, topic, count=4000, keys=60, rate=400, poison_every=200)
    feed.start()
    time.sleep(2)  # a backlog when the first worker starts: its first batches are full
    workers.start()
    try:
        time.sleep(2.5)
        workers.kill()  # mid-stream, mid-batch
        workers.start()
        time.sleep(2.5)
        workers.kill()
        # the last worker starts on a backlog of new events, so its batches (whose metrics are
        # checked below) are full whatever the timing: a fast worker that had caught up before
        # the kill used to see only re-deliveries (CI: 45 transactions, 1 record)
        feed.join(120)
        workers.start()
        rows = check_effects(settings, topic, feed, timeout_s=300)
        deadline = time.monotonic() + 30
        while handler != "one-by-one" and metric(port, "relay_batch_records_count", topic) == 0 \
                and time.monotonic() < deadline:
            time.sleep(1)  # this run's worker may not have committed a batch yet
        batches = metric(port, "relay_batch_records_count", topic)
        records = metric(port, "relay_batch_records_sum", topic)
    finally:
        workers.stop()
    follow_ups = echoes(settings, echo)
    assert sorted(follow_ups) == sorted(r[0] for r in rows), "one follow-up event per effect, none twice"
    letters = read_until(settings.bootstrap_servers, dlq_topic(topic),
                         lambda recs: len(recs) >= len(feed.poison), 60)
    reasons = {dict(m.headers())[Header.ID.value].decode(): dict(m.headers())[Header.DLQ_REASON.value]
               for m in letters}
    assert set(reasons) == set(feed.poison) and set(reasons.values()) == {b"decode"}
    if handler == "per-event":  # a failing event leaves the rest of its batch committed together
        assert batches > 0 and records / batches > 1, f"no batches: {batches} transactions, {records} records"
    # a batch handler's list holding a flaky event (1 in 25 here: nearly every full list) fails as
    # a whole and runs again in halves, so its committed batches are the smaller lists left
    # (CI: 41 transactions, 0 fresh records); list sizes are proven by tests/integration/test_pg_tx.py
    # and the pg_inbox bench (every effect exactly once at ~8,500 events/s)
    print(f"{len(rows)} effects and follow-ups exactly once in order, {len(feed.poison)} poison dead-lettered; "
          f"last worker: {records:.0f} records in {batches:.0f} transactions")
