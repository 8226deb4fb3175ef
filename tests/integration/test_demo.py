"""`relay demo` end to end: Faust worker, inbox dedup of re-sent events, exactly-once effects."""

import json
import os
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_consumes_every_event_exactly_once(stack, settings):
    # the demo scrapes its worker's metrics port: a free one, not the default, which another
    # process on this shared machine may hold (a CI run failed with "Address already in use")
    env = {**os.environ, "RELAY_WORKER_METRICS_PORT": str(free_port())}
    out = subprocess.run([sys.executable, "-m", "relay", "demo", "--orders", "100", "--duplicates", "7", "--json"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    s = json.loads(out.stdout)
    assert s["ok"] is True
    assert s["committed"] == s["published"] == s["consumed"] == s["handler_runs"] == 200
    assert s["duplicates_injected"] == 7 and s["duplicates_skipped"] >= 7
    assert s["order_violations"] == 0 and s["key_or_header_mismatches"] == 0
    # the worker the demo started is gone
    assert not (settings.stack_dir / "pids" / "worker-orders.pid").exists()


def test_a_postgres_inbox_worker_keeps_no_inbox_changelog(stack, settings):
    """The demo's worker has a Postgres inbox (processed_events): on the kafka engine its inbox
    table lives in memory only, so there is no inbox changelog to write per event or to restore
    at assignment; its parking table still has its compacted changelog."""
    from confluent_kafka.admin import AdminClient

    from relay.examples.orders import AGGREGATE_TYPE, APP_ID

    topics = AdminClient({"bootstrap.servers": settings.bootstrap_servers}).list_topics(timeout=10).topics
    assert f"{APP_ID}-parked-{AGGREGATE_TYPE}-changelog" in topics, "run after the demo test"
    assert f"{APP_ID}-inbox-{AGGREGATE_TYPE}-changelog" not in topics
