"""OffsetProgress: what counts as a connector task making progress after an action."""

from relay.connect.settle import OffsetProgress, PastRow, all_of, progress_timeout
from relay.errors import ConnectError


class Offsets:
    """A Connect client whose stored offsets are read from a script (an exception = unreadable)."""

    def __init__(self, *values):
        self.values = list(values)

    def offsets(self, name):
        value = self.values.pop(0) if len(self.values) > 1 else self.values[0]
        if isinstance(value, Exception):
            raise value
        return value


def test_one_move_is_not_progress_two_are():
    # the batch before a poison record commits once, then the task dies: never two moves
    progress = OffsetProgress(Offsets({"lsn": 1}, {"lsn": 1}, {"lsn": 2}, {"lsn": 2}, {"lsn": 3}), "c")
    assert [progress(), progress(), progress(), progress()] == [False, False, False, True]
    assert progress() is True  # latched


def test_unreadable_baseline_takes_the_first_value_read_later():
    progress = OffsetProgress(Offsets(ConnectError("timeout"), None, {"lsn": 5}, {"lsn": 6}, {"lsn": 7}), "c")
    assert progress() is None  # still cannot tell
    assert [progress(), progress(), progress()] == [False, False, True]


def test_an_empty_offset_never_counts():
    progress = OffsetProgress(Offsets({}, {}, {}), "c", moves=1)
    assert [progress(), progress()] == [False, False]


def past_row(*values, lsn=100):
    return PastRow(Offsets(*[[{"offset": v}] if isinstance(v, dict) else v for v in values]), "c", lsn)


def test_a_blocked_row_is_passed_only_when_the_stored_offset_reaches_it():
    reading = past_row({"lsn": "99", "lsn_proc": "98"}, {"lsn_proc": "100"}, {"lsn": "1"})
    assert [reading(), reading(), reading()] == [False, True, True]  # latched


def test_unreadable_offsets_never_count_as_past_the_row():
    # "cannot tell" would let a restart that fails again on the same row exit 0 (seen in CI)
    reading = past_row(ConnectError("timeout"), [], {"lsn": "100"})
    assert [reading(), reading(), reading()] == [False, False, True]
    assert all_of(OffsetProgress(Offsets(ConnectError("x")), "c"), past_row(ConnectError("x")))() is False


def test_the_wait_covers_two_heartbeats_when_progress_must_be_seen():
    """Two offset moves take two heartbeats on an idle outbox: a long heartbeat interval must not
    turn a working task into "no progress" at the default 60 s."""
    assert progress_timeout(60, settle_s=5, heartbeat_ms=5000) == 60
    assert progress_timeout(60, settle_s=5, heartbeat_ms=60_000) == 155
