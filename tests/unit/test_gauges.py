"""processors.gauges.Gauges.watch: the stalled-partition warning (pure, no I/O)."""

from processors.gauges import Gauges

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
