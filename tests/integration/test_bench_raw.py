"""The raw baselines (relay.bench.raw) run end to end on the real stack and report sane figures.

No timing thresholds: only the shape of the result, positive rates, and that they clean up.
"""

import time

import psycopg
import pytest

from relay.bench.raw import BENCH_DB, kafka_throughput, postgres_commit_rate
from relay.topics import admin

pytestmark = pytest.mark.integration


def test_postgres_commit_rate(stack, settings):
    r = postgres_commit_rate(settings, events=2000, writers=4, payload_bytes=500, timeout_s=120)
    assert set(r) == {"events", "seconds", "rate", "writers", "payload_bytes", "wal_bytes", "wal_bytes_per_event"}
    assert (r["events"], r["writers"], r["payload_bytes"]) == (2000, 4, 500)
    assert r["seconds"] > 0 and r["rate"] > 0
    # every event wrote at least its payload to the WAL
    assert r["wal_bytes"] > 0 and r["wal_bytes_per_event"] >= 500
    # bench tables truncated afterwards; the relay's own database untouched by the bench
    with psycopg.connect(psycopg.conninfo.make_conninfo(settings.dsn, dbname=BENCH_DB)) as conn:
        assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM bench_business").fetchone()[0] == 0
    with psycopg.connect(settings.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM outbox WHERE aggregatetype = 'bench.raw'").fetchone()[0] == 0


def test_kafka_throughput(stack, settings):
    before = set(admin(settings).list_topics(timeout=30).topics)
    r = kafka_throughput(settings, events=2000, payload_bytes=500, partitions=2, timeout_s=120)
    assert set(r) == {"events", "payload_bytes", "produce_rate", "produce_mb_s", "consume_rate", "consume_mb_s"}
    assert (r["events"], r["payload_bytes"]) == (2000, 500)
    assert all(r[k] > 0 for k in ("produce_rate", "produce_mb_s", "consume_rate", "consume_mb_s"))
    deadline = time.monotonic() + 30  # deletion is asynchronous on the broker side
    while (left := {t for t in set(admin(settings).list_topics(timeout=30).topics) - before
                    if t.startswith("bench.raw.")}) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"bench topic not deleted: {left}"
