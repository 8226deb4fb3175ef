"""`relay demo` end to end: Faust worker, inbox dedup of re-sent events, exactly-once effects."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_demo_consumes_every_event_exactly_once(stack, settings):
    out = subprocess.run([sys.executable, "-m", "relay", "demo", "--orders", "100", "--duplicates", "7", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    s = json.loads(out.stdout)
    assert s["ok"] is True
    assert s["committed"] == s["published"] == s["consumed"] == s["handler_runs"] == 200
    assert s["duplicates_injected"] == 7 and s["duplicates_skipped"] >= 7
    assert s["order_violations"] == 0 and s["key_or_header_mismatches"] == 0
    # the worker the demo started is gone
    assert not (settings.stack_dir / "pids" / "worker-orders.pid").exists()


def test_inbox_changelog_is_compacted_and_co_partitioned(stack, settings):
    """After a demo run the worker's inbox changelog exists, compacted with the dedup window as
    retention, partitioned like its source."""
    from confluent_kafka.admin import AdminClient, ConfigResource

    from relay.examples.orders import AGGREGATE_TYPE, APP_ID, TOPIC

    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    changelog = f"{APP_ID}-inbox-{AGGREGATE_TYPE}-changelog"
    topics = admin.list_topics(timeout=10).topics
    assert changelog in topics, "run after test_demo_consumes_every_event_exactly_once"
    assert len(topics[changelog].partitions) == len(topics[TOPIC].partitions)
    (future,) = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, changelog)]).values()
    config = future.result()
    # compacted (one record per event id) and expiring after the dedup window (bounded size)
    assert set(config["cleanup.policy"].value.split(",")) == {"compact", "delete"}
    assert int(config["retention.ms"].value) == settings.inbox_window_s * 1000
