"""Slot-guardian diagnosis: known failure modes turned into actionable problems (no I/O)."""

from datetime import datetime, timezone

from relay.config import load_settings
from relay.outbox.guardian import CdcPosition, Health, ProblemCode, diagnose
from relay.outbox.slot import SlotInfo

S = load_settings({})
POS = CdcPosition(0x3C1DDF0, datetime(2026, 11, 23, 20, 5, tzinfo=timezone.utc))
OUTBOX = {"unpublished_rows": 0, "terminal_rows": 0}
SLOT_OK = SlotInfo("relay_outbox", True, True, 1, "0/3C1DDF0", "0/3C1DDF0", "reserved", 100, 10**9)


def connector(state="RUNNING", task="RUNNING", trace=""):
    return {"connector": {"state": state}, "tasks": [{"id": 0, "state": task, "trace": trace}]}


def codes(slot=SLOT_OK, conn=connector(), pos=POS, outbox=OUTBOX):
    return [p.code for p in diagnose(Health(outbox, slot, conn, pos), S)]


def test_healthy():
    assert codes() == []


def test_missing_slot_with_stored_offset_is_a_gap_with_the_recovery_command():
    problems = diagnose(Health(OUTBOX, SlotInfo("relay_outbox", False), connector(), POS), S)
    (gap,) = [p for p in problems if p.code == ProblemCode.GAP]
    assert "0/3C1DDF0" in gap.message and "2026-11-23T20:05:00" in gap.message
    assert "relay outbox reconcile" in gap.action


def test_invalidated_slot_is_a_gap():
    lost = SlotInfo("relay_outbox", True, False, None, None, "0/3C1DDF0", "lost", None, None)
    assert ProblemCode.GAP in codes(slot=lost)


def test_task_failing_on_unavailable_wal_is_a_gap_not_just_a_failure():
    trace = "io.debezium.DebeziumException: ... but this is no longer available on the server. Reconfigure ..."
    assert codes(conn=connector(task="FAILED", trace=trace)) == [ProblemCode.GAP]


def test_other_task_failure():
    assert codes(conn=connector(task="FAILED", trace="PSQLException: password authentication failed")) == [
        ProblemCode.TASK_FAILED]


def test_absent_connector_unreserved_slot_not_streaming_and_terminal_rows():
    unreserved = SlotInfo("relay_outbox", True, False, None, "0/1", "0/1", "unreserved", 5 * 10**9, -1)
    assert codes(slot=unreserved, conn=None, pos=None) == [ProblemCode.SLOT_UNRESERVED, ProblemCode.CONNECTOR_ABSENT]
    idle = SlotInfo("relay_outbox", True, False, None, "0/1", "0/1", "reserved", 1, 1)
    assert codes(slot=idle) == [ProblemCode.NOT_STREAMING]
    assert codes(outbox={"unpublished_rows": 3, "terminal_rows": 2}) == [ProblemCode.TERMINAL_ROWS]
