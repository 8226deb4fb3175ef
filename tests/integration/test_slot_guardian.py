"""Slot guardian against the real stack: heartbeats keep an idle outbox's slot moving; a slot
dropped while the connector was stopped is reported as a gap, and reconciliation closes it."""

import json
import subprocess
import sys
import time

import psycopg
import pytest

from relay.connect import ConnectClient
from relay.outbox.slot import slot_info
from relay.verify import detect_gaps
from tests.support.kafka import read_ids
from tests.support.writers import Writers

pytestmark = pytest.mark.integration


def lsn(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def relay(*args):
    return subprocess.run([sys.executable, "-m", "relay", *args], capture_output=True, text=True, timeout=300)


def test_idle_outbox_busy_database_slot_keeps_moving(stack, settings, unique):
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        start = lsn(slot_info(conn, settings.slot_name).restart_lsn)
        conn.execute(f"CREATE TABLE busy_{unique} (id serial PRIMARY KEY, pad text)")
        deadline = time.monotonic() + 60
        moved = False
        while time.monotonic() < deadline and not moved:
            conn.execute(f"INSERT INTO busy_{unique} (pad) SELECT repeat('x', 500) FROM generate_series(1, 2000)")
            time.sleep(0.5)
            moved = lsn(slot_info(conn, settings.slot_name).restart_lsn) > start
        written = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)",
                               (f"{start >> 32:X}/{start & 0xFFFFFFFF:X}",)).fetchone()[0]
        conn.execute(f"DROP TABLE busy_{unique}")
    assert moved, f"restart_lsn did not move while {written} bytes of WAL were written elsewhere"


def test_dropped_slot_is_reported_as_gap_and_reconciled(stack, settings, unique):
    client = ConnectClient(settings.connect_rest_url)
    topic = f"outbox.event.g{unique}"
    aggregates = [f"agg-{i}" for i in range(5)]
    before = Writers(settings.dsn, f"g{unique}", aggregates, threads=1, per_aggregate=4).run()
    read_ids(settings.bootstrap_servers, topic, before.ids)
    time.sleep(6)  # one offset flush: the stored position includes these events

    client.stop(settings.connector_name)
    with psycopg.connect(settings.cdc_dsn, autocommit=True) as conn:
        while slot_info(conn, settings.slot_name).active:
            time.sleep(0.2)
        conn.execute("SELECT pg_drop_replication_slot(%s)", (settings.slot_name,))
    during = Writers(settings.dsn, f"g{unique}", aggregates, threads=1, per_aggregate=4).run()
    client.resume(settings.connector_name)
    time.sleep(10)  # let Debezium try: it must not silently stream past the gap

    out = relay("outbox", "stats", "--json")
    health = json.loads(out.stdout)
    assert out.returncode == 1, out.stdout + out.stderr
    gap = [p for p in health["problems"] if p["code"] == "gap"]
    assert gap, health["problems"]
    assert "reconcile" in gap[0]["action"] and "may not be in Kafka" in gap[0]["message"]

    done = relay("outbox", "reconcile", "--yes", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["republished"] >= 20

    after = Writers(settings.dsn, f"g{unique}", aggregates, threads=1, per_aggregate=4).run()
    committed = {a: before.committed[a] + during.committed[a] + after.committed[a] for a in aggregates}
    everything = before.ids | during.ids | after.ids
    report = detect_gaps(committed, read_ids(settings.bootstrap_servers, topic, everything))
    assert not report.lost and report.ok, report.summary()
    assert relay("outbox", "stats").returncode == 0
