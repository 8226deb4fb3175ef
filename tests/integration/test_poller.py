"""Polling-relay specifics: several pollers keep per-aggregate order; a row that keeps failing
becomes terminal after N attempts, is counted, and holds back later rows of its aggregate."""

import threading
import time

import psycopg
import pytest

from relay.config import load_settings
from relay.metrics import PollerMetrics
from relay.outbox import write
from relay.outbox.poller import NOTIFY_CHANNEL, PollingRelay, WakeupLease
from relay.verify import detect_gaps
from tests.support.kafka import read_ids
from tests.support.relays import poller_relay
from tests.support.writers import Writers

pytestmark = pytest.mark.integration


def test_three_pollers_keep_per_aggregate_order(stack, settings, unique):
    relays = poller_relay(stack, settings, count=3, RELAY_POLLER_BATCH_SIZE="25")
    relays.start()
    try:
        w = Writers(relays.dsn, f"m{unique}", [f"agg-{i}" for i in range(10)], threads=5, per_aggregate=40).run()
        records = read_ids(settings.bootstrap_servers, f"outbox.event.m{unique}", w.ids)
    finally:
        relays.stop()
    report = detect_gaps(w.committed, records)
    assert report.ok, report.summary()
    assert report.committed == 400 and report.duplicates == 0


def test_terminal_row_is_counted_and_holds_its_aggregate(stack, settings, unique):
    relays = poller_relay(stack, settings)  # only for the database; the relay runs in-process here
    # the limit lowered after the row was written: the poller's producer now takes 2 KB + headroom
    s = load_settings(pg_dsn=relays.dsn, poller_max_attempts=2, max_event_bytes=2048)
    agg_type = f"f{unique}"
    with psycopg.connect(s.dsn) as conn:
        with conn.transaction():
            too_big = write(conn, aggregatetype=agg_type, aggregateid="X", type="Huge",
                            payload={"blob": "x" * 200_000}, max_event_bytes=settings.max_event_bytes)
            held = write(conn, aggregatetype=agg_type, aggregateid="X", type="After", payload={})
            free = write(conn, aggregatetype=agg_type, aggregateid="Y", type="Other", payload={})
        metrics = PollerMetrics.create()
        relay = PollingRelay(s, metrics=metrics)
        for _ in range(4):
            relay.publish_batch(conn)
        state = {str(r[0]): r[1:] for r in conn.execute(
            "SELECT id, published_at IS NOT NULL, failed_at IS NOT NULL, publish_attempts, last_error"
            " FROM outbox WHERE aggregatetype = %s", (agg_type,))}
    assert state[str(free)][:2] == (True, False)
    published, failed, attempts, error = state[str(too_big)]
    assert (published, failed, attempts) == (False, True, 2) and "MSG_SIZE_TOO_LARGE" in error.upper().replace(" ", "_")
    assert state[str(held)][:3] == (False, False, 0), "a later row of the failed aggregate waits"
    assert metrics.terminal._value.get() == 1 and metrics.failed._value.get() == 2


def test_outbox_inserts_notify_only_while_a_poller_holds_a_lease(stack, settings, unique):
    """A NOTIFY serialises commits cluster-wide, so writers notify only while a poller listens."""
    relays = poller_relay(stack, settings)  # a database of its own: no other poller's lease
    with psycopg.connect(relays.dsn, autocommit=True) as listener, psycopg.connect(relays.dsn) as writer:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")

        def notified() -> int:
            with writer.transaction():
                write(writer, aggregatetype=f"n{unique}", aggregateid="A", type="T", payload={})
            return len(list(listener.notifies(timeout=1.0, stop_after=1)))

        assert notified() == 0, "no poller: the commit must not take the NOTIFY lock"
        lease = WakeupLease(listener)
        lease.keep()
        assert notified() == 1
        lease.release()
        assert notified() == 0
        listener.execute("INSERT INTO relay_poller_leases VALUES ('crashed', now() - interval '1 s')")
        assert notified() == 0, "an expired lease (a poller that died) does not count"


class _RecordingRelay(PollingRelay):
    """A real PollingRelay whose produce step records the order instead of sending: what is under
    test is the claim (Postgres locking), and the record happens while the claim is held."""

    def __init__(self, settings, published: list, lock: threading.Lock) -> None:
        super().__init__(settings)
        self.published, self.lock = published, lock

    def _produce(self, row, on_delivery) -> None:
        with self.lock:
            self.published.append((row[2], row[0]))


def test_claims_keep_per_aggregate_order_under_contention(stack, settings, unique):
    """Six pollers with tiny batches race over 20 aggregates while writers commit: every row is
    claimed once, and per aggregate in commit order (a lock decided per row, mid-scan, does not)."""
    relays = poller_relay(stack, settings)  # only for the database
    s = load_settings(pg_dsn=relays.dsn, poller_batch_size=3)
    published: list[tuple[str, str]] = []
    lock, stop = threading.Lock(), threading.Event()
    pollers = [_RecordingRelay(s, published, lock) for _ in range(6)]

    def loop(relay: PollingRelay) -> None:
        with psycopg.connect(s.dsn, autocommit=True) as conn:
            while not stop.is_set():
                if not relay.publish_batch(conn).published:
                    time.sleep(0.001)

    threads = [threading.Thread(target=loop, args=(p,), daemon=True) for p in pollers]
    # a backlog first: a poller's scan is then long enough for another to commit in the middle of it
    w = Writers(s.dsn, f"c{unique}", [f"agg-{i}" for i in range(20)], threads=10, per_aggregate=40).run()
    for t in threads:
        t.start()
    try:
        # count only this test's rows: the shared database may hold rows other tests left behind
        ids, deadline = w.ids, time.monotonic() + 60
        while sum(eid in ids for _, eid in list(published)) < len(ids) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    mine = [(agg, eid) for agg, eid in published if eid in w.ids]
    assert len(mine) == len(set(mine)) == len(w.ids) == 800, "every row claimed exactly once"
    for agg, ids in w.committed.items():
        assert [eid for a, eid in mine if a == agg] == ids, f"{agg} published out of commit order"
