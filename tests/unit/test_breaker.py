"""Circuit breaker and in-flight limiter: pure logic driven by a fake clock."""

import math

import pytest

from relay.errors import ConfigError
from relay.handling.breaker import BreakerState, CircuitBreaker


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make(threshold=3, open_for=5.0, cap=60.0):
    clock = FakeClock()
    return CircuitBreaker(failure_threshold=threshold, open_for_s=open_for, max_open_for_s=cap, clock=clock), clock


def open_it(breaker):
    for _ in range(breaker.failure_threshold):
        breaker.record_failure(retriable=True)
    assert breaker.state == BreakerState.OPEN


def fail_probe(breaker, clock):
    """Wait out the open period, take the probe, fail it retriably; returns the new open duration."""
    clock.advance(breaker.retry_after_s())
    assert breaker.allow() and breaker.state == BreakerState.HALF_OPEN
    breaker.record_failure(retriable=True)
    assert breaker.state == BreakerState.OPEN
    return breaker.retry_after_s()


def test_defaults():
    b = CircuitBreaker()
    assert (b.failure_threshold, b.open_for_s, b.max_open_for_s) == (5, 5.0, 60.0)
    assert b.state == BreakerState.CLOSED and b.allow() and b.retry_after_s() == 0.0 and b.opened_total == 0


def test_opens_after_threshold_consecutive_retriable_failures():
    b, _ = make(threshold=3)
    b.record_failure(retriable=True)
    b.record_failure(retriable=True)
    assert b.state == BreakerState.CLOSED and b.allow()
    b.record_failure(retriable=True)
    assert b.state == BreakerState.OPEN and not b.allow() and b.opened_total == 1


def test_success_breaks_the_streak():
    b, _ = make(threshold=3)
    b.record_failure(retriable=True)
    b.record_failure(retriable=True)
    b.record_success()
    b.record_failure(retriable=True)
    b.record_failure(retriable=True)
    assert b.state == BreakerState.CLOSED, "the streak restarted after the success"
    b.record_failure(retriable=True)
    assert b.state == BreakerState.OPEN


def test_terminal_failures_neither_count_nor_reset_the_streak():
    b, _ = make(threshold=3)
    for _ in range(50):
        b.record_failure(retriable=False)
    assert b.state == BreakerState.CLOSED and b.allow() and b.opened_total == 0
    b.record_failure(retriable=True)
    b.record_failure(retriable=False)
    b.record_failure(retriable=True)
    b.record_failure(retriable=False)
    b.record_failure(retriable=True)
    assert b.state == BreakerState.OPEN, "terminal failures in between do not break a retriable streak"


def test_open_refuses_until_the_period_elapses_then_admits_exactly_one_probe():
    b, clock = make(open_for=5.0)
    open_it(b)
    clock.advance(4.999)
    assert not b.allow() and b.state == BreakerState.OPEN
    clock.advance(0.001)
    assert b.allow() and b.state == BreakerState.HALF_OPEN
    assert [b.allow() for _ in range(5)] == [False] * 5, "only one probe while it is outstanding"
    clock.advance(1000)
    assert not b.allow(), "time alone does not admit a second probe"


def test_successful_probe_closes_and_resets():
    b, clock = make(threshold=2, open_for=5.0)
    open_it(b)
    fail_probe(b, clock)
    clock.advance(b.retry_after_s())
    assert b.allow()
    b.record_success()
    assert b.state == BreakerState.CLOSED and b.allow() and b.allow() and b.retry_after_s() == 0.0
    b.record_failure(retriable=True)
    assert b.state == BreakerState.CLOSED, "failure count was reset"
    b.record_failure(retriable=True)
    assert b.state == BreakerState.OPEN and b.retry_after_s() == 5.0, "open duration was reset"


def test_failed_probe_doubles_open_time_up_to_the_cap():
    b, clock = make(open_for=5.0, cap=60.0)
    open_it(b)
    assert b.retry_after_s() == 5.0
    durations = [fail_probe(b, clock) for _ in range(6)]
    assert durations == [10.0, 20.0, 40.0, 60.0, 60.0, 60.0]
    assert b.opened_total == 7


def test_cap_not_a_power_of_two_multiple():
    b, clock = make(open_for=3.0, cap=10.0)
    open_it(b)
    assert [fail_probe(b, clock) for _ in range(3)] == [6.0, 10.0, 10.0]


def test_reopened_breaker_refuses_until_the_doubled_period():
    b, clock = make(open_for=5.0)
    open_it(b)
    fail_probe(b, clock)
    clock.advance(9.9)
    assert not b.allow()
    clock.advance(0.1)
    assert b.allow()


def test_terminal_failure_of_the_probe_admits_another_probe():
    b, clock = make(open_for=5.0)
    open_it(b)
    clock.advance(5)
    assert b.allow()
    b.record_failure(retriable=False)
    assert b.state == BreakerState.HALF_OPEN and b.opened_total == 1
    assert b.allow() and not b.allow(), "one new probe, still only one at a time"
    b.record_success()
    assert b.state == BreakerState.CLOSED


def test_retry_after_values():
    b, clock = make(open_for=5.0)
    assert b.retry_after_s() == 0.0
    open_it(b)
    assert b.retry_after_s() == 5.0
    clock.advance(2)
    assert b.retry_after_s() == 3.0
    clock.advance(10)
    assert b.retry_after_s() == 0.0, "never negative"
    assert b.state == BreakerState.OPEN, "state is a plain read; allow() makes the transition"
    assert b.allow() and b.retry_after_s() == 0.0
    b.record_failure(retriable=True)
    assert b.retry_after_s() == 10.0


def test_late_outcomes_while_open():
    b, clock = make(open_for=5.0)
    open_it(b)
    clock.advance(3)
    b.record_failure(retriable=True)
    assert b.state == BreakerState.OPEN and b.retry_after_s() == 2.0 and b.opened_total == 1, \
        "a failure of a record admitted earlier neither extends nor re-counts the open period"
    b.record_success()
    assert b.state == BreakerState.CLOSED and b.allow(), "a success proves the downstream answers"


def test_default_clock_is_monotonic():
    b = CircuitBreaker(failure_threshold=1, open_for_s=3600, max_open_for_s=3600)
    b.record_failure(retriable=True)
    assert not b.allow() and 3599 < b.retry_after_s() <= 3600


@pytest.mark.parametrize(
    "kwargs, field, value, expected",
    [
        ({"failure_threshold": 0}, "failure_threshold", "0", "integer >= 1"),
        ({"failure_threshold": -2}, "failure_threshold", "-2", "integer >= 1"),
        ({"failure_threshold": 2.5}, "failure_threshold", "2.5", "integer >= 1"),
        ({"failure_threshold": True}, "failure_threshold", "True", "integer >= 1"),
        ({"open_for_s": 0}, "open_for_s", "0", "seconds > 0"),
        ({"open_for_s": -1.0}, "open_for_s", "-1.0", "seconds > 0"),
        ({"open_for_s": math.inf}, "open_for_s", "inf", "finite"),
        ({"open_for_s": "5"}, "open_for_s", "'5'", "seconds > 0"),
        ({"max_open_for_s": 4.0}, "max_open_for_s", "4.0", ">= open_for_s (5.0)"),
        ({"max_open_for_s": math.nan}, "max_open_for_s", "nan", ">= open_for_s"),
        ({"open_for_s": 0.5, "max_open_for_s": 0}, "max_open_for_s", "0", "seconds > 0"),
    ],
)
def test_settings_validation_names_field_value_and_expectation(kwargs, field, value, expected):
    with pytest.raises(ConfigError) as info:
        CircuitBreaker(**kwargs)
    [problem] = info.value.problems
    assert f"{field} = {value};" in problem and expected in problem, problem
    assert field in str(info.value)


def test_settings_validation_lists_every_problem():
    with pytest.raises(ConfigError) as info:
        CircuitBreaker(failure_threshold=0, open_for_s=-1, max_open_for_s=-5)
    assert [p.split(" = ")[0] for p in info.value.problems] == [
        "circuit breaker failure_threshold", "circuit breaker open_for_s", "circuit breaker max_open_for_s"]


def test_cap_equal_to_first_duration_is_valid():
    b, clock = make(open_for=5.0, cap=5.0)
    open_it(b)
    assert fail_probe(b, clock) == 5.0


def test_threshold_one_opens_on_first_retriable_failure():
    b, _ = make(threshold=1)
    b.record_failure(retriable=True)
    assert b.state == BreakerState.OPEN


def test_no_verdict_from_the_probe_admits_another():
    clock = FakeClock()
    b = CircuitBreaker(failure_threshold=1, open_for_s=1, clock=clock)
    b.record_failure(True)
    clock.now += 1
    assert b.allow() and not b.allow()
    b.record_no_verdict()
    assert b.allow()
