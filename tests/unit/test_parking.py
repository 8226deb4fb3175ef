"""Parking bookkeeping (pure). The ordering it gives a consumer is proven on the consumer's own
pipeline in tests/unit/test_consumer_routing.py."""

from relay.handling.parking import Parking


def test_done_on_an_unparked_key_is_a_no_op():
    table = {}
    parking = Parking(table)
    parking.head_done("K")
    parking.behind_done("K")
    assert table.get("K") is None


def test_behind_records_take_turns_by_sequence_across_stages():
    """A behind record parked after its head moved on can reach a stage before an earlier one:
    it is handled only at its turn (the consumer puts it back to wait otherwise)."""
    table = {}
    p = Parking(table)
    p.park_head("K", "e1", 1)
    p.add_behind("K")  # e2: seq 1, in stage 1
    p.park_head("K", "e1", 2)  # e1 failed again: stage 2
    p.add_behind("K")  # e3: seq 2, sent to stage 2 while e2 still sits in stage 1
    p.head_done("K")
    assert not p.turn("K", 2) and p.turn("K", 1)
    p.behind_done("K", 1)
    assert p.turn("K", 2)
    p.behind_done("K", 2)
    assert table["K"] is None, "unparked once the head and every behind record are done"


def test_a_failing_behind_record_leads_and_keeps_the_sequence():
    table = {}
    p = Parking(table)
    p.park_head("K", "e1", 1)
    p.add_behind("K")
    p.add_behind("K")
    p.head_done("K")
    p.park_head("K", "e2", 1)  # e2 (seq 1) failed while being handled: it leads now
    p.behind_done("K", 1)
    state = p.state("K")
    assert (state.head, state.behind, state.tail, state.done) == ("e2", 1, 2, 1)
    assert p.turn("K", 2)
