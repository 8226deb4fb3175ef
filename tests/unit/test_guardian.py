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


CONNECTOR_OK = connector()


def codes(slot=SLOT_OK, conn=CONNECTOR_OK, pos=POS, outbox=OUTBOX):
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


def test_paused_connector_with_waiting_rows_is_a_problem():
    waiting = {"backlog_rows": 50_000, "backlog_oldest_age_s": 34.2, "terminal_rows": 0}
    assert codes(conn=connector(state="PAUSED", task="PAUSED"), outbox=waiting) == [ProblemCode.CONNECTOR_PAUSED]
    assert codes(conn=connector(state="PAUSED", task="PAUSED")) == []  # paused and nothing waits


def test_each_dependency_that_is_down_is_named_and_nothing_else_is_guessed():
    down = {"postgres": "Postgres at postgresql://relay:****@h/db unreachable: refused",
            "kafka": "Kafka at h:1 unreachable: transport failure"}
    problems = diagnose(Health({}, None, connector(), None, down=down), S)
    assert [p.code for p in problems] == [ProblemCode.POSTGRES_UNREACHABLE, ProblemCode.KAFKA_UNREACHABLE]
    assert "****" in problems[0].message
    connect_down = Health({}, SLOT_OK, None, None, down={"connect": "Kafka Connect at x unreachable"})
    assert [p.code for p in diagnose(connect_down, S)] == [ProblemCode.CONNECT_UNREACHABLE]


def test_task_failure_reports_the_root_cause_not_the_first_line():
    trace = ("org.apache.kafka.connect.errors.ConnectException: Unrecoverable exception trying to send\n\tat x\n"
             "Caused by: org.apache.kafka.common.KafkaException: Cannot execute transactional method\n\tat y\n"
             "Caused by: org.apache.kafka.common.errors.RecordTooLargeException: The message is 2097337 bytes "
             "when serialized which is larger than 1048576\n\tat z")
    (failed,) = diagnose(Health(OUTBOX, SLOT_OK, connector(task="FAILED", trace=trace), POS), S)
    assert "RecordTooLargeException: The message is 2097337 bytes" in failed.message
    assert "RELAY_MAX_EVENT_BYTES" in failed.message and "relay outbox unblock" in failed.action


def test_running_connector_that_stores_no_position_while_rows_wait_is_flagged():
    from datetime import timedelta

    waiting = {"backlog_rows": 6, "backlog_oldest_age_s": 40.0, "terminal_rows": 0}
    stale = Health(waiting, SLOT_OK, connector(), POS, checked_at=POS.committed_at + timedelta(seconds=40))
    (problem,) = diagnose(stale, S)
    assert problem.code == ProblemCode.NOT_STREAMING and "40 s" in problem.message
    fresh = Health(waiting, SLOT_OK, connector(), POS, checked_at=POS.committed_at + timedelta(seconds=3))
    assert diagnose(fresh, S) == []
