"""Hard-kill the relay repeatedly while writers commit: nothing committed may be lost.

CI runs a few kills per relay; `make faults` sets FAULT_KILLS=20 for the long variant.
Duplicates are allowed (at-least-once) and reported; losses and per-aggregate disorder fail.
"""

import os
import random
import time

import pytest

from relay.verify import detect_gaps
from tests.support.kafka import read_ids
from tests.support.writers import Writers

pytestmark = pytest.mark.integration
KILLS = int(os.environ.get("FAULT_KILLS", "3"))


def test_hard_kills_lose_nothing(relay_impl, settings, unique, record_property):
    aggregatetype = f"k{unique}"
    rng = random.Random(unique)
    w = Writers(relay_impl.dsn, aggregatetype, [f"agg-{i}" for i in range(24)], threads=4,
                rate_per_thread=60).start()
    started = time.monotonic()
    for _ in range(KILLS):
        time.sleep(rng.uniform(1.0, 3.0))
        relay_impl.kill()
        time.sleep(rng.uniform(0.2, 1.0))  # writers keep committing while the relay is down
        relay_impl.start()
    time.sleep(1.0)
    w.join()
    committed = sum(len(v) for v in w.committed.values())
    records = read_ids(settings.bootstrap_servers, f"outbox.event.{aggregatetype}", w.ids, timeout_s=180)
    report = detect_gaps(w.committed, records)
    line = (f"[{relay_impl.name}] {KILLS} kills in {time.monotonic() - started:.0f} s: {report.summary()}; "
            f"duplicates per kill {report.duplicates / KILLS:.0f}")
    print(line)
    record_property("fault_report", line)
    assert committed > 100
    assert not report.lost, f"LOST {len(report.lost)} events: {report.lost[:5]} ... ({line})"
    assert report.ok, line
