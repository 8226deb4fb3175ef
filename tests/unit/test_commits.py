"""relay.consume._faust.commits.next_commit: the commit-offset rule for topics with holes (pure, no I/O)."""

from itertools import pairwise

from intervaltree import IntervalTree

from relay.consume._faust.commits import next_commit


def _faust_gaps(records: list[int]) -> IntervalTree:
    """Gap intervals as faust-streaming records them: a hole before record r is [prev + 1, r + 1)
    (it covers the record after the hole too)."""
    tree = IntervalTree()
    for prev, nxt in pairwise(records):
        if nxt - prev > 1:
            tree.addi(prev + 1, nxt + 1)
    return tree


def test_one_commit_passes_every_transaction_marker():
    # a Debezium EOS topic: a control record after every third record
    records = [o for o in range(1000, 1300) if o % 4 != 3]
    acked, gaps = list(records), _faust_gaps(records)
    assert next_commit(acked, gaps, committed=1000) == records[-1] + 1
    assert acked == [] and not gaps


def test_a_record_in_flight_stops_the_commit_in_front_of_it():
    acked, gaps = [100, 101, 104, 105], IntervalTree()  # 102 and 103 not finished yet
    assert next_commit(acked, gaps, committed=100) == 102
    assert acked == [104, 105]
    assert next_commit(acked, gaps, committed=102) is None  # still waiting
    acked += [102, 103]
    assert next_commit(acked, gaps, committed=102) == 106


def test_holes_above_the_highest_acked_offset_wait():
    acked, gaps = [100], IntervalTree.from_tuples([(101, 103)])  # marker 101, record 102 unfinished
    assert next_commit(acked, gaps, committed=100) == 101
    assert sorted((i.begin, i.end) for i in gaps) == [(101, 103)]
    acked.append(102)
    assert next_commit(acked, gaps, committed=101) == 103


def test_one_offset_of_slack_at_the_head_as_faust_allows():
    assert next_commit([101, 102], IntervalTree(), committed=100) == 103


def test_a_wider_hole_at_the_head_keeps_what_was_filled():
    acked, gaps = [105, 106], IntervalTree.from_tuples([(104, 106)])
    assert next_commit(acked, gaps, committed=100) is None
    assert acked == [104, 105, 106] and not gaps


def test_duplicates_and_stale_offsets_do_not_stall():
    acked = [1417, 1417, 1418, 1419, 1419, 1420]  # what faust's own rule leaves behind
    assert next_commit(acked, IntervalTree(), committed=1418) == 1421
    assert acked == []


def test_nothing_acked():
    assert next_commit([], IntervalTree(), committed=5) is None
