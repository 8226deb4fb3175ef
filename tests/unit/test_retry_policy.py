import pytest

from relay.errors import DatabaseError, DecodeError, InvalidEvent
from relay.handling.retry import RetryPolicy, Verdict, classify


def test_classification():
    assert classify(DatabaseError("down", retriable=True)) and classify(TimeoutError()) and classify(ConnectionError())
    assert not classify(DecodeError("bad bytes")) and not classify(InvalidEvent("f", 1, "x"))
    assert not classify(ValueError("bug")) and not classify(KeyError("k"))


def test_ladder_then_dead_letter():
    p = RetryPolicy((1, 10, 60))
    assert [p.next_step(a, TimeoutError()).stage for a in (1, 2, 3)] == [1, 2, 3]
    assert [p.next_step(a, TimeoutError()).delay_s for a in (1, 2, 3)] == [1, 10, 60]
    assert p.next_step(4, TimeoutError()).verdict == Verdict.DEAD_LETTER and p.max_attempts == 4
    assert p.next_step(1, ValueError()).verdict == Verdict.DEAD_LETTER, "terminal errors skip the ladder"


def test_parse():
    assert RetryPolicy.parse("1s, 10s,1m,10m,250ms").delays_s == (1, 10, 60, 600, 0.25)
    with pytest.raises(ValueError, match="'soon'"):
        RetryPolicy.parse("1s,soon")


def test_os_errors_are_retried_only_when_waiting_can_cure_them():
    import errno
    import socket

    assert classify(ConnectionRefusedError()) and classify(BrokenPipeError()) and classify(socket.gaierror(-2, "dns"))
    assert classify(OSError(errno.EHOSTUNREACH, "no route")) and classify(OSError(errno.EAGAIN, "again"))
    assert not classify(PermissionError(errno.EACCES, "denied")) and not classify(FileNotFoundError(2, "gone"))
    assert not classify(OSError("no errno")) and not classify(IsADirectoryError(21, "dir"))
