"""Which row blocks the connector, and the offset that skips exactly it: pure decisions over
decoded pgoutput messages (built here byte for byte), a task trace and topic limits."""

import struct
import time
from datetime import timedelta

import pytest

from relay.connect.settle import root_cause
from relay.errors import ConnectError
from relay.outbox.blocked import CauseKind, after_offset, classify, skip_offset, suspect
from relay.outbox.unblock import Unblocker
from relay.outbox.wal import PG_EPOCH, UNIX_MINUS_PG_EPOCH_US, decode

COLUMNS = ["id", "aggregatetype", "aggregateid", "type", "payload", "headers"]


def relation(relid=16400, name="outbox"):
    cols = b"".join(b"\x01" + c.encode() + b"\0" + struct.pack(">Ii", 25, -1) for c in COLUMNS)
    return (b"R" + struct.pack(">I", relid) + b"public\0" + name.encode() + b"\0" + b"d"
            + struct.pack(">h", len(COLUMNS)) + cols)


def insert(values, relid=16400):
    data = b"".join(b"n" if v is None else b"t" + struct.pack(">i", len(v.encode())) + v.encode() for v in values)
    return b"I" + struct.pack(">I", relid) + b"N" + struct.pack(">h", len(values)) + data


def begin(final_lsn, xid, ts_us=1_000_000):
    return b"B" + struct.pack(">QqI", final_lsn, ts_us, xid)


def commit(commit_lsn, end_lsn):
    return b"C" + b"\0" + struct.pack(">QQq", commit_lsn, end_lsn, 0)


def row(eid, agg="order", payload='{"a": 1}'):
    return [eid, agg, "k", "T", payload, None]


def tx(xid, first_lsn, commit_start, rows, with_relation=False):
    """One transaction as the slot returns it: (lsn, xid, message) rows; changes 0x10 apart."""
    out = [(first_lsn, xid, begin(commit_start, xid))]
    if with_relation:
        out.append((first_lsn, xid, relation()))
    out += [(first_lsn + 0x10 * i, xid, insert(r)) for i, r in enumerate(rows)]
    out.append((commit_start + 0x30, xid, commit(commit_start, commit_start + 0x30)))
    return out


STREAM = (tx(700, 0x1000, 0x1100, [row("a1"), row("a2")], with_relation=True)
          + tx(701, 0x1200, 0x1300, [row("b1"), row("bad", "big", '{"blob": "' + "x" * 5000 + '"}'), row("b3")])
          + tx(702, 0x1400, 0x1500, [row("c1", "other")]))


def test_decode_gives_rows_positions_and_the_previous_commit():
    rows = decode(STREAM)
    assert [r.event_id for r in rows] == ["a1", "a2", "b1", "bad", "b3", "c1"]
    bad = rows[3]
    assert (bad.lsn, bad.xid, bad.commit_lsn, bad.index) == (0x1210, 701, 0x1300, 1)
    assert bad.prev_commit_end == 0x1130 and rows[0].prev_commit_end is None
    assert bad.aggregatetype == "big" and bad.size > 5000
    assert bad.commit_ts_unix_us == 1_000_000 + UNIX_MINUS_PG_EPOCH_US
    assert bad.committed_at == PG_EPOCH + timedelta(seconds=1)


def test_pending_after_a_commit_offset_and_after_a_change_offset():
    rows = decode(STREAM)
    after_first_tx = {"lsn_proc": 0x1130, "lsn_commit": 0x1130, "lsn": 0x1130, "messageType": "COMMIT"}
    assert [r.event_id for r in after_offset(rows, after_first_tx)] == ["b1", "bad", "b3", "c1"]
    mid_tx = {"lsn_proc": 0x1200, "lsn_commit": 0x1130, "lsn": 0x1200, "txId": 701, "messageType": "INSERT"}
    assert [r.event_id for r in after_offset(rows, mid_tx)] == ["bad", "b3", "c1"]
    with pytest.raises(LookupError):
        after_offset(rows, {**mid_tx, "txId": 999})


def test_the_offset_that_skips_exactly_the_bad_row_is_its_own():
    rows = decode(STREAM)
    stored = {"lsn_proc": 0x1200, "lsn_commit": 0x1130, "lsn": 0x1200, "txId": 701, "messageType": "INSERT"}
    bad = after_offset(rows, stored)[0]
    assert skip_offset(bad, stored) == {"lsn_proc": 0x1210, "messageType": "INSERT", "lsn_commit": 0x1130,
                                        "lsn": 0x1210, "txId": 701, "ts_usec": bad.commit_ts_unix_us}


def test_a_row_sharing_its_lsn_cannot_be_skipped_alone():
    shared = [(0x2000, 800, begin(0x2100, 800)), (0x2000, 800, relation()), (0x2010, 800, insert(row("m1"))),
              (0x2010, 800, insert(row("m2"))), (0x2130, 800, commit(0x2100, 0x2130))]
    with pytest.raises(ValueError, match="multi-row insert"):
        skip_offset(decode(shared)[0], {})


TOO_LARGE = ("org.apache.kafka.connect.errors.ConnectException: Unrecoverable exception trying to send\n\tat a\n"
             "Caused by: org.apache.kafka.common.errors.RecordTooLargeException: The message is 2097337 bytes when "
             "serialized which is larger than 1048576, which is the value of the max.request.size configuration.")
COLLISION = ("org.apache.kafka.connect.errors.ConnectException: Unable to create topic(s) 'outbox.event.c3.x': "
             "Topic 'outbox.event.c3.x' collides with existing topic: outbox.event.c3_x")


def test_causes_are_classified_from_the_trace():
    big = classify(TOO_LARGE, root_cause(TOO_LARGE, hint=False))
    assert (big.kind, big.limit) == (CauseKind.TOO_LARGE, 1048576)
    assert big.text.startswith("org.apache.kafka.common.errors.RecordTooLargeException: The message is 2097337")
    clash = classify(COLLISION, root_cause(COLLISION))
    assert (clash.kind, clash.topic) == (CauseKind.TOPIC, "outbox.event.c3.x")
    assert classify("java.lang.NullPointerException", "x").kind == CauseKind.OTHER


def test_suspect_is_the_first_pending_row_that_fits_the_cause():
    rows = decode(STREAM)
    too_large = classify(TOO_LARGE, "r")
    assert suspect(rows, too_large, {}) is None  # 5 KB is below the producer limit it names
    assert suspect(rows, too_large, {"outbox.event.big": 2000}).event_id == "bad"
    clash = classify(COLLISION.replace("c3.x", "other").replace("c3_x", "oth_er"), "r")
    assert suspect(rows, clash, {}).event_id == "c1"
    assert suspect(rows, classify("boom", "boom"), {}).event_id == "a1"


def test_root_cause_is_the_deepest_caused_by_with_a_hint():
    text = root_cause(TOO_LARGE)
    assert text.startswith("org.apache.kafka.common.errors.RecordTooLargeException")
    assert "(reported as: org.apache.kafka.connect.errors.ConnectException" in text
    assert "relay outbox unblock --retry" in text
    assert root_cause("") == "(Connect gave no trace)"


class _HeldSlot(Unblocker):
    """locate() while the failed task still holds the slot for ``held`` tries."""

    def __init__(self, held, error=None):
        self.held, self.tries = held, 0
        self.error = error or ConnectError("slot 'relay' is still held by a task", retriable=True)

    def _locate(self, cause):
        self.tries += 1
        if self.tries <= self.held:
            raise self.error
        return "the blocked row"


def test_locate_waits_until_a_failed_task_lets_go_of_the_slot(monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    assert _HeldSlot(3).locate(wait_s=60) == "the blocked row"
    with pytest.raises(ConnectError, match="still held"):
        _HeldSlot(3).locate()  # no wait asked: the error, as before
    fatal = _HeldSlot(1, ConnectError("connector missing", retriable=False))
    with pytest.raises(ConnectError, match="missing"):
        fatal.locate(wait_s=60)
    assert fatal.tries == 1
