"""Several workers of one group started together, then a backlog: every partition is consumed,
with no restart from outside. faust-streaming drops a fetch that spans a rebalance (about half of
the 2-worker starts, measured); the worker's watchdog seeks such a partition back by itself.

Bounded for CI (STARTS starts per size); ``make faults`` runs 20 with FAULT_STARTS=20."""

import os
import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from relay.bench import consumer as bench
from relay.bench.noop_app import app_id
from relay.bench.pipeline import _group_stable
from relay.bench.worker_proc import WorkerProcess, handled
from relay.consume._faust.gapfill import GapReader
from relay.topics import admin, apply_topics
from tests.support.engines import FAUST_IN_LONG_RUNS

pytestmark = pytest.mark.integration
STARTS = int(os.environ.get("FAULT_STARTS", "3"))


def start_together(settings, workdir, workers: int) -> tuple[float, int]:
    """One start: seconds until every partition was committed to its end, and how many times a
    worker sought a partition back."""
    marker = f"together{workers}{uuid.uuid4().hex[:6]}"
    topic = f"outbox.event.{marker}"
    scaled = settings.model_copy(update={"topic_partitions": workers})
    apply_topics(scaled, [topic])
    procs = [WorkerProcess(topic, "memory", workdir, name=f"{marker}-{n}",
                           env={"RELAY_TOPIC_PARTITIONS": str(workers)}).start() for n in range(workers)]
    try:
        client, deadline = admin(settings), time.monotonic() + 90
        while not _group_stable(client, app_id(topic, "memory"), workers):
            assert time.monotonic() < deadline, f"{workers} workers did not form a group"
            for w in procs:
                w.check()
            time.sleep(0.3)
        bench.produce(scaled, topic, 400 * workers)  # right as the group settles: the racy moment
        probe = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"probe-{marker}"})
        highs = [probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(workers)]
        probe.close()
        reader, started = GapReader(settings.bootstrap_servers, app_id(topic, "memory")), time.monotonic()
        while True:
            committed = reader.committed_many([(topic, p) for p in range(workers)])
            if all(committed[(topic, p)] >= highs[p] for p in range(workers)):
                break
            assert time.monotonic() - started < 60, f"partitions left unconsumed: {committed} of {highs}"
            for w in procs:
                w.check()
            time.sleep(0.3)
        unstalled = sum(_unstalled(w.port, topic) for w in procs)
        return time.monotonic() - started, unstalled
    finally:
        for w in procs:
            w.stop()
        bench.delete_topics(settings, marker)


def _unstalled(port: int, topic: str) -> int:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    prefix = f'relay_partitions_unstalled_total{{topic="{topic}"}} '
    return sum(int(float(line[len(prefix):])) for line in text.splitlines() if line.startswith(prefix))


@pytest.mark.parametrize(("engine", "workers"), [
    ("kafka", 2), ("kafka", 4), ("faust", 2), pytest.param("faust", 4, marks=FAUST_IN_LONG_RUNS.marks)],
    indirect=["engine"])
def test_workers_started_together_consume_every_partition(stack, settings, tmp_path, engine, workers):
    runs = [start_together(settings, tmp_path, workers) for _ in range(STARTS)]
    print(f"[{workers} workers] {STARTS} starts: caught up in {[round(s, 1) for s, _ in runs]} s, "
          f"partitions sought back {[n for _, n in runs]}")
    assert handled  # the bench helper stays importable (used by the worker processes' metrics)
