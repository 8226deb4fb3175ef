"""relay.consume._faust.gauges.Gauges.watch: the stalled-partition warning (pure, no I/O)."""

from relay.consume._faust.gauges import Gauges, records_behind

TP = ("outbox.event.order", 1)


def gauges() -> Gauges:
    return Gauges(app=None, metrics=None, parking=None, continuity=None, topic=TP[0], stall_s=60)


def test_a_partition_without_progress_is_reported_once():
    g = gauges()
    assert not g.watch(TP, 100, 50, now=0)
    assert not g.watch(TP, 100, 80, now=59)
    assert g.watch(TP, 100, 90, now=61)
    assert not g.watch(TP, 100, 95, now=120)  # once


def test_progress_or_a_trailing_marker_is_not_a_stall():
    g = gauges()
    g.watch(TP, 100, 50, now=0)
    assert not g.watch(TP, 140, 50, now=70)  # moved: the clock restarts
    assert not g.watch(TP, 140, 50, now=120)
    assert g.watch(TP, 140, 50, now=131)
    idle = gauges()
    idle.watch(TP, 200, 1, now=0)
    assert not idle.watch(TP, 200, 1, now=600)  # one offset of lag: an EOS topic's last marker


# records_behind(high, expected, position, delivered): offsets of an exactly-once topic with a
# transaction marker after every few records, e.g. records 0-2, marker 3, records 4-5, marker 6.

def test_caught_up_on_an_exactly_once_topic_is_zero_not_one():
    # handled 5 (expects 6); 6 is the trailing marker, fetched past: position = high = 7
    assert records_behind(high=7, expected=6, position=7, delivered=5) == 0
    assert records_behind(high=7, expected=7, position=7, delivered=6) == 0  # no markers
    # after a restart: committed 6 (the marker), nothing handed over since
    assert records_behind(high=7, expected=6, position=7, delivered=None) == 0


def test_real_lag_is_still_shown():
    assert records_behind(high=7, expected=0, position=0, delivered=None) == 7  # nothing fetched yet
    assert records_behind(high=107, expected=6, position=7, delivered=5) == 100  # 100 not fetched
    # fetched and handed over (4, 5) but not taken yet: they wait in the stream buffer
    assert records_behind(high=7, expected=4, position=7, delivered=5) == 2
    # a retry-stage record waiting for its due time (taken, not finished: expected stays on it)
    assert records_behind(high=1, expected=0, position=1, delivered=0) == 1


def test_without_a_fetch_position_offsets_are_counted():
    assert records_behind(high=7, expected=6, position=None, delivered=5) == 1
    assert records_behind(high=7, expected=6, position=3, delivered=5) == 1  # seeked back: position behind


def test_a_stale_delivered_offset_is_ignored():
    # revoked and reassigned: the consumer seeked back to 4, the old delivered offset 9 is stale
    assert records_behind(high=10, expected=4, position=4, delivered=9) == 6
