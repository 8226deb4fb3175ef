"""Inbox window: expired ids count as unseen, and entries this process recorded are removed."""

from relay.handling import Inbox


def test_expired_entries_are_unseen_and_removed_oldest_first():
    table = {}
    inbox = Inbox(table, window_s=10)
    inbox.record("a", 100.0, partition=0)
    inbox.record("b", 105.0, partition=0)
    inbox.record("c", 100.0, partition=1)
    assert inbox.seen("a", now=109.9) and not inbox.seen("a", now=110.0)
    assert inbox.expire(0, now=112.0) == 1
    assert set(table) == {"b", "c"}, "partition 1's entry waits for a record of partition 1"
    assert inbox.expire(1, now=112.0) == 1 and set(table) == {"b"}


def test_an_id_recorded_again_is_kept_and_budget_bounds_the_work():
    table = {}
    inbox = Inbox(table, window_s=10)
    for i in range(5):
        inbox.record(f"e{i}", 100.0 + i, partition=0)
    inbox.record("e0", 120.0, partition=0)  # handled again after its window (a late copy)
    assert inbox.expire(0, now=125.0, budget=2) == 2  # e0's old entry is passed over; e1, e2 go
    assert "e0" in table and "e1" not in table and "e3" in table
    assert inbox.expire(0, now=125.0) == 2 and set(table) == {"e0"}


def test_no_window_means_forever():
    table = {}
    inbox = Inbox(table)
    inbox.record("a", 0.0)
    assert inbox.seen("a", now=1e12) and inbox.expire(None, now=1e12) == 0
