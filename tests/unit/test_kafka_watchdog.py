"""The kafka engine's watchdog: a hang becomes a stop with every thread's stack, then an exit."""

import logging
import time

from relay.consume._kafka.watchdog import Watchdog, thread_stacks


class Calls:
    def __init__(self):
        self.stopped, self.exited = [], []

    def dog(self):
        return Watchdog(self.stopped.append, loop_limit_s=30, exit_grace_s=60, exit=self.exited.append)


def test_a_call_over_its_limit_stops_the_worker_once_then_exits_if_stopping_hangs(caplog):
    calls = Calls()
    dog = calls.dog()
    now = time.monotonic()
    with dog.watching("poll", limit_s=10):
        dog.beat()
        dog.check(now + 5)
        assert calls.stopped == []
        with caplog.at_level(logging.CRITICAL, logger="relay.consumer"):
            dog.check(now + 11)
        (reason,) = calls.stopped
        assert "poll has not returned for 11 s" in str(reason)
        assert "Threads:" in caplog.text and "test_kafka_watchdog" in caplog.text  # where this thread was
        dog.check(now + 20)
        assert len(calls.stopped) == 1 and calls.exited == []
        dog.check(now + 72)
    assert calls.exited == [1]


def test_a_call_that_returns_in_time_is_forgotten():
    calls = Calls()
    dog = calls.dog()
    with dog.watching("poll", limit_s=10):
        pass
    dog.beat()
    dog.check(time.monotonic() + 20)
    assert calls.stopped == []


def test_an_event_loop_that_runs_no_beat_is_stuck():
    calls = Calls()
    dog = calls.dog()
    dog.beat()
    dog.check(time.monotonic() + 31)
    assert "event loop has not run for 31 s" in str(calls.stopped[0])


def test_thread_stacks_name_the_threads():
    assert "thread MainThread" in thread_stacks()
