"""Workers SIGKILLed mid-stream and consumer-group rebalances, with an independent producer
feeding records meanwhile: afterwards every record's effect exists exactly once (Postgres inbox,
counted in an effect table), per key in production order, none lost.

Bounded for CI (a few kills); ``make faults`` runs more with FAULT_KILLS=<n>.
"""

import os
import time

import pytest

from relay.topics import apply_topics
from tests.support.effects_app import check_effects as check, prepare
from tests.support.engines import FAUST_IN_LONG_RUNS, KAFKA_AND_LONG_FAUST
from tests.support.workers import Feed, Workers

pytestmark = pytest.mark.integration
KILLS = int(os.environ.get("FAULT_KILLS", "3"))
APP = "tests.support.effects_app:make_consumer"


def setup(settings, unique, name):
    topic = f"outbox.event.{name}{unique}"
    apply_topics(settings, [topic])
    prepare(settings.dsn)
    return topic


@pytest.mark.parametrize(("engine", "concurrency", "store"), [
    ("kafka", 1, "memory"), ("kafka", 4, "memory"), ("faust", 4, "rocksdb"),
    pytest.param("faust", 1, "memory", marks=FAUST_IN_LONG_RUNS.marks)], indirect=["engine"])
def test_sigkill_mid_stream_effects_exactly_once_in_order(stack, settings, unique, engine, concurrency, store):
    topic = setup(settings, unique, f"kill{concurrency}{store[0]}{engine[0]}")
    workers = Workers(settings, APP, f"worker-kill-{unique}", args=("--store", store), env={
        "EFFECTS_TOPIC": topic, "EFFECTS_DELAY_MS": "2", "RELAY_CONSUMER_CONCURRENCY": str(concurrency)})
    workers.start()
    kills = 0
    try:
        feed = Feed(settings, topic, count=800 * (KILLS + 1), keys=80, rate=500).start()
        while kills < KILLS:
            time.sleep(1.6)
            workers.kill()
            kills += 1
            workers.start()
        feed.join(300)
        rows = check(settings, topic, feed)
        assert workers.alive()
    finally:
        workers.stop()
    print(f"[{engine}, concurrency {concurrency}, {store}] {kills} SIGKILLs, {len(rows)} effects, exactly once, "
          "in order")


@pytest.mark.parametrize("engine", KAFKA_AND_LONG_FAUST, indirect=True)
def test_rebalance_add_and_remove_workers(stack, settings, unique, engine):
    topic = setup(settings, unique, "rebalance")
    workers = Workers(settings, APP, f"worker-rebal-{unique}",
                      env={"EFFECTS_TOPIC": topic, "EFFECTS_DELAY_MS": "1", "RELAY_CONSUMER_CONCURRENCY": "2"})
    workers.start(0)
    try:
        feed = Feed(settings, topic, count=6000, keys=120, rate=500).start()
        steps = [lambda: workers.start(1), lambda: workers.start(2),  # scale out: 1 -> 3 workers
                 lambda: workers.stop(1),                             # scale in, gracefully
                 lambda: workers.kill(0)]                             # and a crash
        for step in steps:
            time.sleep(2.0)
            step()
        feed.join(300)
        rows = check(settings, topic, feed)
        assert workers.alive(2)
    finally:
        workers.stop()
    by_worker = {}
    for _, _, pid in rows:
        by_worker[pid] = by_worker.get(pid, 0) + 1
    assert len(by_worker) >= 2, f"the work was shared: {by_worker}"
    print(f"[rebalance] {len(rows)} effects by {len(by_worker)} workers {sorted(by_worker.values())}")
