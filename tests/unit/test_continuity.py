"""Continuity: holes between the committed offset / last handled offset and the next record."""

import pytest

from relay.handling.continuity import Continuity

TP = ("t", 0)


def test_first_record_is_compared_with_the_committed_offset():
    c = Continuity()
    c.start(TP, 100)
    assert c.gap(TP, 100) is None
    c.done(TP, 100)
    assert c.gap(TP, 101) is None


def test_a_hole_is_reported_as_a_half_open_range():
    c = Continuity()
    c.start(TP, 100)
    assert c.gap(TP, 133) == (100, 133)
    c.done(TP, 133)
    assert c.gap(TP, 137) == (134, 137)
    assert c.gaps == 2


def test_one_offset_holes_mid_stream_are_transaction_markers():
    c = Continuity()
    c.start(TP, 100)
    assert c.gap(TP, 101) == (100, 101)  # the first record after an assignment: always read
    c.done(TP, 101)
    assert c.gap(TP, 103) is None  # a marker at 102
    c.done(TP, 103)
    assert c.gap(TP, 106) == (104, 106)  # wider: read
    assert (c.gaps, c.markers) == (2, 1)
    c.start(TP, 110)  # a new assignment: the first record is compared with the committed offset again
    assert c.gap(TP, 111) == (110, 111)


def test_redeliveries_are_not_holes_and_do_not_move_back():
    c = Continuity()
    c.start(TP, 10)
    c.done(TP, 20)
    assert c.gap(TP, 15) is None
    c.done(TP, 15)
    assert c.gap(TP, 21) is None


def test_reset_forgets_partitions_until_started_again():
    c = Continuity()
    c.start(TP, 5)
    c.start(("t", 1), 7)
    c.reset([TP])
    assert not c.known(TP) and c.known(("t", 1))
    with pytest.raises(KeyError):
        c.gap(TP, 9)
    c.reset()
    assert not c.known(("t", 1))
