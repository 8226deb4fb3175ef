"""The broker SIGKILLed for longer than the connector's transaction timeout while writers commit:
nothing committed may be lost, and the connector recovers by itself (no restart by hand).

Why here: the connector's producer runs with ``RELAY_TRANSACTION_TIMEOUT_MS`` (15 s, not Kafka's
60 s) so that a task failed on a record is reported FAILED sooner; an outage longer than that with
a transaction open must not turn into a failed task. Checked with an independent read_committed
reader and the gap detector. The shared stack's broker is killed by pid and started again by
``Stack.up`` (same data directory), as an operator would; meanwhile `relay outbox stats` must name
the broker as the dependency that is down.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from relay.connect import ConnectClient
from relay.stack import Stack
from relay.verify import detect_gaps
from tests.support.kafka import read_ids
from tests.support.writers import Writers

pytestmark = pytest.mark.integration
OUTAGE_S = 35


def test_broker_sigkill_longer_than_the_transaction_timeout_loses_nothing(stack, settings, unique):
    assert OUTAGE_S * 1000 > settings.transaction_timeout_ms
    aggregatetype = f"bk{unique}"
    w = Writers(settings.dsn, aggregatetype, [f"agg-{i}" for i in range(8)], threads=2, rate_per_thread=30).start()
    time.sleep(5)
    stack_ = Stack(settings)
    pid = stack_.kafka.process.pid()
    assert pid
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    stats = subprocess.run([sys.executable, "-m", "relay", "outbox", "stats", "--json"], capture_output=True,
                           text=True, timeout=60)
    took = time.monotonic() - t0
    health = json.loads(stats.stdout)
    print(f"stats during the outage: rc {stats.returncode} in {took:.1f} s, problems "
          f"{[p['code'] for p in health['problems']]}")
    # the broker is named, not Connect (whose offsets endpoint blocks meanwhile), and no traceback
    assert stats.returncode == 1 and "Traceback" not in stats.stderr
    assert "kafka_unreachable" in [p["code"] for p in health["problems"]]
    assert "connect" not in health["down"] and took < 20
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - t0)))
    stack_.up()
    time.sleep(10)
    w.join()
    records = read_ids(settings.bootstrap_servers, f"outbox.event.{aggregatetype}", w.ids, timeout_s=180)
    report = detect_gaps(w.committed, records)
    state = ConnectClient(settings.connect_rest_url).state(settings.connector_name)
    print(f"broker down {OUTAGE_S} s: {report.summary()}; connector {state['connector']['state']}, "
          f"tasks {[t['state'] for t in state['tasks']]}")
    assert not report.lost, report.summary()
    assert report.ok, report.summary()
    assert state["ok"], state
