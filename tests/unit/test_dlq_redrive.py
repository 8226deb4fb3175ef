"""Redrive bookkeeping without Kafka: positions, their commit metadata, the replay plan, the rate."""

from dataclasses import dataclass

import pytest

from relay.errors import RelayError
from relay.handling.redrive import Position, RateLimiter, plan, position_from_commit, progress_line


@dataclass(frozen=True)
class Letter:
    partition: int
    offset: int
    event_id: str | None


def letters(*spec: tuple[int, int, str]) -> list[Letter]:
    return [Letter(p, o, e) for p, o, e in spec]


def test_all_replays_only_letters_past_the_position_and_a_second_plan_after_it_is_empty():
    dead = letters((0, 0, "a"), (0, 1, "b"), (1, 0, "c"), (0, 2, "d"))
    first = plan(dead, {0: Position(1), 1: Position(0)})
    assert [d.event_id for d in first.send] == ["b", "d", "c"], "partition order, offset order"
    after = {0: Position(0).passed(2), 1: Position(0).passed(0)}
    assert plan(dead, after).send == [], "replay --all twice sends nothing the second time"


def test_a_letter_dead_lettered_again_after_its_replay_is_a_new_letter():
    dead = letters((0, 0, "a"), (0, 1, "a"))  # a replayed, failed again, dead-lettered at offset 1
    assert [d.offset for d in plan(dead, {0: Position(1)}).send] == [1]


def test_by_id_skips_copies_already_replayed_unless_forced():
    dead = letters((0, 0, "a"), (0, 1, "b"), (0, 2, "a"))
    positions = {0: Position(1)}
    chosen = plan(dead, positions, event_id="a")
    assert [d.offset for d in chosen.send] == [2] and [d.offset for d in chosen.already_replayed] == [0]
    positions = {0: positions[0].with_replayed(2)}
    again = plan(dead, positions, event_id="a")
    assert again.send == [] and [d.offset for d in again.already_replayed] == [0, 2]
    assert [d.offset for d in plan(dead, positions, event_id="a", force=True).send] == [0, 2]
    assert [d.offset for d in plan(dead, positions).send] == [1], "--all skips the one replayed by id"


def test_a_letter_replayed_by_id_ahead_of_the_position_is_remembered_until_passed():
    pos = Position(3).with_replayed(7).with_replayed(9).with_replayed(8)
    assert pos == Position(3, frozenset({7, 8, 9}))
    assert pos.is_replayed(2) and not pos.is_replayed(3) and pos.is_replayed(8) and not pos.is_replayed(10)
    assert pos.with_replayed(3).with_replayed(4).with_replayed(5).with_replayed(6) == Position(10)
    assert pos.passed(7) == Position(10), "passing a run of replayed offsets jumps over it"
    assert pos.passed(20) == Position(21)


def test_position_round_trips_through_commit_metadata_as_ranges():
    pos = Position(5, frozenset({7, 8, 9, 12, 20, 21}))
    assert pos.metadata() == "v1:7-9,12,20-21"
    assert position_from_commit(5, pos.metadata(), low=0, high=30) == pos
    assert Position(4).metadata() == "v1:"


def test_position_from_commit_handles_no_commit_retention_and_a_recreated_topic():
    assert position_from_commit(-1001, None, low=3, high=9) == Position(3), "never committed: from the start"
    assert position_from_commit(2, "v1:5", low=4, high=9) == Position(4, frozenset({5})), "deleted letters"
    assert position_from_commit(50, "v1:60", low=0, high=9) == Position(0), "recreated topic: old position ignored"
    assert position_from_commit(4, "other metadata", low=0, high=9) == Position(4)
    assert position_from_commit(4, "v1:4-5", low=0, high=9) == Position(6)


def test_too_many_letters_replayed_one_by_one_is_refused_not_forgotten():
    pos = Position(0, frozenset(range(1, 5000, 2)))
    with pytest.raises(RelayError, match="replay --all first"):
        pos.metadata()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def test_rate_limiter_spaces_acquisitions_evenly():
    clock = FakeClock()
    limiter = RateLimiter(4, clock=clock, sleep=clock.sleep)
    for _ in range(9):
        limiter.wait()
    assert clock.now - 100.0 == pytest.approx(2.0), "9 records at 4/s: 8 gaps of 0.25 s"
    assert clock.sleeps == [pytest.approx(0.25)] * 8


def test_rate_limiter_does_not_bank_idle_time_into_a_burst():
    clock = FakeClock()
    limiter = RateLimiter(2, clock=clock, sleep=clock.sleep)
    limiter.wait()
    clock.now += 10  # idle
    limiter.wait()
    limiter.wait()
    assert clock.sleeps == [pytest.approx(0.5)]


def test_no_rate_means_no_waiting():
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    for _ in range(100):
        limiter.wait()
    assert clock.sleeps == []


def test_progress_line():
    assert progress_line("t.dlq", 40, 100, 4.0) == "t.dlq: 40/100 replayed (10.0/s)"
