"""Getting the outbox connector past the row it stopped on, without deleting a topic or losing a row.

``locate`` says which row holds the pipeline and why (relay.outbox.blocked decides; this module
gathers the facts: the task's trace, Connect's stored offset, the slot's pending inserts, topic
limits). Two ways out, each ending with the task RUNNING and making progress, or an error:

- ``retry`` — publish it once the cause is fixed: every ``outbox.event.*`` topic gets the
  ``max.message.bytes`` the settings require (a lowered limit is raised back), the connector gets
  its rendered config (producer limit), and the task restarts. Per-aggregate order is kept.
- ``dead_letter`` — move it aside and continue: stop the connector, run it with one record per
  Kafka transaction until it fails again (so every record before the bad one is committed and the
  stored offset is the bad record's predecessor), stop, check that the first pending row is the one
  the failure is about, produce it to ``outbox.dlq`` with its reason (acknowledged by the broker),
  PATCH the stored offset to that row's own offset (Connect's offsets API; Debezium resumes right
  after it), restore the config and resume. The row stays in the outbox table; ``relay dlq replay
  --topic outbox.dlq --id <id>`` publishes it once the cause is fixed (after the later events of
  its aggregate).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from relay.config import Settings
from relay.connect import ConnectClient, render_outbox_connector
from relay.connect.client import first_failure
from relay.connect.settle import OffsetProgress, PastRow, all_of, restart_and_wait, root_cause, wait_stable
from relay.deps import connect_postgres
from relay.errors import ConnectError, RelayError
from relay.headers import OUTBOX_DLQ_TOPIC, Header, event_topic
from relay.outbox.blocked import Cause, after_offset, classify, skip_offset, suspect
from relay.outbox.slot import slot_info
from relay.outbox.wal import WalInsert, lsn_int, lsn_text, peek
from relay.topics import admin, apply_topics, existing_outbox_topics, producer_config, topic_limits

# the outbox dead-letter topic takes rows far over the event limit (rows written before it existed)
OUTBOX_DLQ_MAX_BYTES = 32 * 2**20
SLOT_RELEASE_WAIT_S = 45.0  # a failed Debezium task lets go of its replication slot within ~30 s
_HEADROOM = 64 * 1024
# no new stored offset for this long while pinning (and at least 2.5 heartbeats, which move it even
# when no row flows): the task is stuck on the first pending record, whether Connect says so yet or not
STALL_S = 10.0


@dataclass
class Blocked:
    row: WalInsert | None  # None: no pending row fits the cause
    cause: Cause
    pending: int  # inserts waiting after the stored offset

    def as_dict(self) -> dict[str, Any]:
        return {"row": None if self.row is None else self.row.as_dict(), "cause": self.cause.text,
                "kind": str(self.cause.kind), "pending_rows": self.pending}

    def describe(self) -> str:
        if self.row is None:
            return f"no pending row fits the failure ({self.pending} rows wait): {self.cause.text}"
        r = self.row
        return (f"event {r.event_id} (aggregatetype {r.aggregatetype}, {r.size:,} bytes, LSN {lsn_text(r.lsn)}, "
                f"txid {r.xid}) blocks {self.pending} pending rows: {self.cause.text}")


@dataclass
class UnblockReport:
    mode: str
    outcome: str
    row: dict[str, Any] | None = None
    dead_letter: str | None = None  # topic/partition@offset
    steps: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "outcome": self.outcome, "row": self.row, "dead_letter": self.dead_letter,
                "steps": self.steps}


class Unblocker:
    """The two ways out, and ``locate``, for the connector of ``settings``."""

    def __init__(self, settings: Settings, say: Callable[[str], None] = lambda _m: None) -> None:
        self.s, self.say = settings, say
        self.client = ConnectClient.for_settings(settings)
        self.name = settings.connector_name
        self.steps: list[str] = []

    def _step(self, text: str) -> None:
        self.steps.append(text)
        self.say(text)

    # --- facts ---------------------------------------------------------------------------
    def failure(self) -> Cause | None:
        failed = first_failure(self.client.state(self.name))
        return None if failed is None else classify(failed[1], root_cause(failed[1], hint=False))

    def stored(self, wait_s: float = 90) -> dict[str, Any]:
        """Connect's stored offset entry ({partition, offset}); {} when there is none. The offsets
        endpoint does not answer while a failed task's producer closes (up to ~30 s): wait it out."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                entries = self.client.offsets(self.name)
                return entries[0] if entries else {}
            except ConnectError as exc:
                if not exc.retriable or time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def pending(self) -> list[WalInsert]:
        """Inserts after the stored offset (the slot must have no reader)."""
        with connect_postgres(self.s.cdc_dsn) as conn:
            slot = slot_info(conn, self.s.slot_name)
        if slot.active:
            raise ConnectError(f"slot {self.s.slot_name!r} is still held by a task (a failed task can take 30 s "
                               "to close); try again in a few seconds", retriable=True)
        rows = peek(self.s.cdc_dsn, self.s.slot_name, self.s.publication)
        flushed = lsn_int(slot.confirmed_flush_lsn) if slot.confirmed_flush_lsn else 0
        return after_offset(rows, self.stored().get("offset"), flushed)

    def locate(self, cause: Cause | None = None, *, wait_s: float = 0.0) -> Blocked | None:
        """The row the failed task stopped on; None when no task is FAILED. While the failed task
        still holds the slot (it can take 30 s to let go), retries for up to ``wait_s``."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return self._locate(cause)
            except RelayError as exc:
                if not exc.retriable or time.monotonic() >= deadline:
                    raise
            time.sleep(1.0)

    def _locate(self, cause: Cause | None) -> Blocked | None:
        cause = cause or self.failure()
        if cause is None:
            return None
        pending = self.pending()
        return Blocked(suspect(pending, cause, self._limits(pending)), cause, len(pending))

    def _limits(self, rows: list[WalInsert]) -> dict[str, int]:
        client = admin(self.s)
        existing = set(existing_outbox_topics(self.s))
        topics = sorted({event_topic(r.aggregatetype or "") for r in rows} & existing)
        return topic_limits(client, topics)

    # --- way out 1: publish it once the cause is fixed ------------------------------------
    def retry(self, timeout_s: float = 90) -> UnblockReport:
        blocked = self._locate_if_possible()
        existing = existing_outbox_topics(self.s)
        raised = [t for t, r in apply_topics(self.s, existing).items() if r == "limit raised"]
        self._step(f"topic limits: {len(existing)} topics checked, raised on {raised or 'none'}")
        self.client.apply(self.name, render_outbox_connector(self.s))
        self._step("connector config applied (producer max.request.size from RELAY_MAX_EVENT_BYTES)")
        progress = all_of(OffsetProgress(self.client, self.name),
                          PastRow(self.client, self.name, blocked.row.lsn) if blocked and blocked.row else None)
        self._step("restarting the connector and its task; waiting until the task stays RUNNING and makes progress")
        try:
            restart_and_wait(self.client, self.name, only_failed=False, settle_s=self.s.connect_settle_s,
                             timeout_s=timeout_s, reading=progress)
        except ConnectError as exc:
            raise RelayError(f"{exc}\n-> the cause is not fixed: {self._advice(blocked)}") from None
        row = None if blocked is None or blocked.row is None else blocked.row.as_dict()
        return UnblockReport("retry", "published: the connector runs past the row", row, steps=self.steps)

    def _locate_if_possible(self) -> Blocked | None:
        try:
            blocked = self.locate(wait_s=SLOT_RELEASE_WAIT_S)
        except RelayError as exc:
            self._step(f"blocked row not located ({exc})")
            return None
        if blocked is not None:
            self._step(f"blocked: {blocked.describe()}")
        return blocked

    def _advice(self, blocked: Blocked | None) -> str:
        if blocked is not None and blocked.row is not None and blocked.row.size > self.s.max_event_bytes:
            return (f"the row is {blocked.row.size:,} bytes and RELAY_MAX_EVENT_BYTES is {self.s.max_event_bytes:,}: "
                    "raise it (then `relay outbox migrate`) or move the row aside with "
                    "`relay outbox unblock --dead-letter`")
        return "fix it, or move the row aside with `relay outbox unblock --dead-letter`"

    # --- way out 2: dead-letter it and continue --------------------------------------------
    def dead_letter(self, timeout_s: float = 120) -> UnblockReport:
        cause = self.failure()
        if cause is None:
            return UnblockReport("dead-letter", "nothing to do: no task is FAILED", steps=self.steps)
        self._step(f"task failed: {cause.text}")
        normal = render_outbox_connector(self.s)
        self._stop()
        try:
            pinned = self._pin(normal, cause, timeout_s)
            if pinned is None:
                return UnblockReport("dead-letter", "published: the rows flowed one by one", steps=self.steps)
            row, where = self._move_aside(pinned)
        finally:
            self.client.apply(self.name, normal)
            self.client.resume(self.name)
            self._step("connector config restored and resumed")
        progress = OffsetProgress(self.client, self.name)
        wait_stable(self.client, self.name, settle_s=self.s.connect_settle_s, timeout_s=timeout_s, reading=progress)
        self._step("the task runs past it")
        return UnblockReport("dead-letter", f"dead-lettered to {where}; the connector continues", row.as_dict(),
                             where, self.steps)

    def _stop(self) -> None:
        self.client.stop(self.name, timeout_s=60)
        deadline = time.monotonic() + 60
        while True:
            with connect_postgres(self.s.cdc_dsn) as conn:
                if not slot_info(conn, self.s.slot_name).active:
                    break
            if time.monotonic() > deadline:
                raise ConnectError(f"slot {self.s.slot_name!r} still in use 60 s after stopping {self.name}")
            time.sleep(0.2)
        self._step(f"connector {self.name} stopped")

    def _pin(self, normal: dict[str, str], cause: Cause, timeout_s: float) -> Cause | None:
        """Run with one record per transaction until the task fails again (returns the new cause),
        or every pending row went through (None); the connector is STOPPED afterwards."""
        single = {**normal, "max.batch.size": "1"}
        self.client.apply(self.name, single)
        before = self.stored()
        self.client.resume(self.name)
        self._step("resumed with max.batch.size=1: every record before the bad one commits on its own")
        new_cause = self._await_failure(before, timeout_s)
        self._stop()
        if new_cause is None and not self.pending():
            return None
        return new_cause or cause

    def _await_failure(self, before: dict[str, Any], timeout_s: float) -> Cause | None:
        deadline = time.monotonic() + timeout_s
        last, since = before, time.monotonic()
        while time.monotonic() < deadline:
            cause = self.failure()
            if cause is not None:
                return cause
            try:
                now = self.stored(wait_s=0)
            except ConnectError:  # the offsets endpoint blocks while a failed task closes
                now = last
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since > max(STALL_S, 2.5 * self.s.heartbeat_interval_ms / 1000):
                return None  # stuck (it failed and Connect has not said so yet) or done
            time.sleep(0.5)
        raise ConnectError(f"connector {self.name}: no outcome within {timeout_s:.0f} s "
                           "of running one record at a time")

    def _move_aside(self, cause: Cause) -> tuple[WalInsert, str]:
        pending = self.pending()
        if not pending:
            raise RelayError("no pending row after the stored offset: nothing to dead-letter")
        first = pending[0]
        if cause.kind != "other" and suspect([first], cause, self._limits([first])) is None:
            raise RelayError(f"the first pending row ({first.event_id}, aggregatetype {first.aggregatetype}, "
                             f"{first.size:,} bytes) is not the one this failure is about ({cause.text}); "
                             "nothing was skipped")
        self._step(f"pinned: {Blocked(first, cause, len(pending)).describe()}")
        where = self._produce(first, cause)
        self._step(f"dead letter written to {where} (acknowledged)")
        stored = self.stored()
        self.client.patch_offsets(self.name, [{"partition": stored.get("partition") or {"server": self.s.topic_prefix},
                                               "offset": skip_offset(first, stored.get("offset") or {})}])
        self._step(f"stored offset moved past LSN {lsn_text(first.lsn)}")
        return first, where

    def _produce(self, row: WalInsert, cause: Cause) -> str:
        from confluent_kafka import Producer

        apply_topics(self.s, [OUTBOX_DLQ_TOPIC], max_message_bytes=OUTBOX_DLQ_MAX_BYTES)
        key, value, headers = dead_letter_record(row, cause, self._stored_row(row))
        producer = Producer(producer_config(self.s, **{"message.max.bytes": OUTBOX_DLQ_MAX_BYTES}))
        result: list[Any] = []
        producer.produce(OUTBOX_DLQ_TOPIC, key=key, value=value, headers=headers,
                         on_delivery=lambda err, msg: result.append(err or msg))
        producer.flush(30)
        if not result or not hasattr(result[0], "offset"):
            raise RelayError(f"writing the dead letter to {OUTBOX_DLQ_TOPIC} failed: {result or 'no acknowledgement'}",
                             retriable=True)
        return f"{OUTBOX_DLQ_TOPIC}/{result[0].partition()}@{result[0].offset()}"

    def _stored_row(self, row: WalInsert) -> dict[str, Any] | None:
        """The row as the outbox table has it (payload as bytes), None when it was deleted."""
        table = "outbox_avro" if row.table == "outbox_avro" else "outbox"
        payload = "payload" if table == "outbox_avro" else "convert_to(payload::text, 'UTF8')"
        with connect_postgres(self.s.dsn) as conn:
            found = conn.execute(f"SELECT {payload}, payload_schema FROM {table} WHERE id = %s",
                                 (row.event_id,)).fetchone()
        return None if found is None else {"payload": found[0], "payload_schema": found[1]}


def dead_letter_record(row: WalInsert, cause: Cause, stored: dict[str, Any] | None
                       ) -> tuple[bytes, bytes | None, list[tuple[str, str | bytes | None]]]:
    """Key, value and headers of the outbox dead letter: the event as the connector would have
    published it, plus where it was in the WAL and why it could not be published."""
    if stored is not None:
        value, schema = stored["payload"], stored["payload_schema"]
        value = bytes(value) if value is not None else None
    else:  # deleted after insert: what the WAL holds
        text = row.row.get("payload")
        value = None if text is None else (bytes.fromhex(text[2:]) if text.startswith("\\x") else text.encode())
        schema = row.row.get("payload_schema")
    headers: list[tuple[str, str | bytes | None]] = [
        (Header.ID.value, (row.event_id or "").encode()), (Header.TYPE.value, (row.row.get("type") or "").encode()),
        (Header.AGGREGATE_TYPE.value, (row.aggregatetype or "").encode())]
    if schema:
        headers.append((Header.PAYLOAD_SCHEMA.value, str(schema).encode()))
    if value is not None and len(value) > OUTBOX_DLQ_MAX_BYTES - _HEADROOM:
        headers.append((Header.DLQ_VALUE_OMITTED.value, f"{len(value)} bytes; the outbox row keeps it".encode()))
        value = None
    headers += [
        (Header.DLQ_ORIGINAL_TOPIC.value, event_topic(row.aggregatetype or "").encode()),
        (Header.DLQ_ERROR_CLASS.value, cause.text.split(":")[0].rsplit(".", 1)[-1].encode()),
        (Header.DLQ_ERROR_MESSAGE.value, cause.text[:2000].encode()),
        (Header.DLQ_ATTEMPTS.value, b"1"),
        (Header.DLQ_FIRST_FAILURE_AT.value, datetime.now(timezone.utc).isoformat().encode()),
        (Header.DLQ_OUTBOX_LSN.value, lsn_text(row.lsn).encode()),
        (Header.DLQ_OUTBOX_TXID.value, str(row.xid).encode()),
    ]
    return (row.row.get("aggregateid") or "").encode(), value, headers
