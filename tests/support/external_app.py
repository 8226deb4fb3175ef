"""Participants for the crash-window tests (issue 17): ``relay worker
tests.support.external_app:make_participants`` with SAGA_WF=<id>.

- ``<id>.note``: an internal write, a row in ``ext_notes`` in the command's inbox transaction;
- ``<id>.pay``: an outside effect through the executor (``Consumer.effect``), against a
  "provider" that records each call it receives on a connection of its own (``ext_provider``:
  it commits whatever happens to the worker), with a lookup that reads what it received.
  EXT_TIMEOUT=1: the provider records the call, then the answer is lost (a timeout).

Commands are written straight to the outbox, as a coordinator would (:func:`send_command`); the
replies are outbox rows of type SagaReply (:func:`replies`).
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import psycopg

from relay import Consumer, Settings
from relay.outbox.writer import write_many
from relay.saga import wire
from relay.saga.state import Dispatch

SCHEMA = """
CREATE TABLE IF NOT EXISTS ext_notes (n bigserial PRIMARY KEY, wf text NOT NULL, key text NOT NULL,
                                      command_id text NOT NULL);
CREATE TABLE IF NOT EXISTS ext_provider (n bigserial PRIMARY KEY, wf text NOT NULL, key text NOT NULL,
                                         amount numeric, charge_id text NOT NULL);
CREATE TABLE IF NOT EXISTS ext_cases (case_id text PRIMARY KEY, risk text NOT NULL, version integer NOT NULL);
"""


def prepare(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(7264)")
        conn.execute(SCHEMA)


def make_participants(settings: Settings) -> Consumer:
    wf = os.environ["SAGA_WF"]
    consumer = Consumer(f"ext-participants-{wf}")

    @consumer.participant(f"{wf}.note")
    async def note(cmd: Any, tx: Any) -> dict[str, str]:
        await tx.execute("INSERT INTO ext_notes (wf, key, command_id) VALUES (%s, %s, %s)",
                         (wf, cmd.idempotency_key, cmd.command_id))
        return {"noted": cmd.idempotency_key}

    @consumer.effect(f"{wf}.pay", effect="external_transaction")
    async def pay(cmd: Any) -> dict[str, str]:
        charge = f"ch-{uuid.uuid4().hex[:10]}"
        async with await psycopg.AsyncConnection.connect(settings.dsn, autocommit=True) as provider:
            await provider.execute("INSERT INTO ext_provider (wf, key, amount, charge_id) VALUES (%s, %s, %s, %s)",
                                   (wf, cmd.idempotency_key, (cmd.input or {}).get("amount"), charge))
        if os.environ.get("EXT_TIMEOUT") == "1":
            raise TimeoutError("the provider took the charge, and its answer was lost")
        return {"charge_id": charge}

    @consumer.participant(f"{wf}.case")
    async def update_case(cmd: Any, tx: Any) -> dict[str, Any]:
        row = await (await tx.execute("SELECT version FROM ext_cases WHERE case_id = %s FOR UPDATE",
                                      (cmd.input["case"],))).fetchone()
        cmd.expect(row[0])  # optimistic concurrency: a stale command is refused, never applied
        await tx.execute("UPDATE ext_cases SET risk = %s, version = version + 1 WHERE case_id = %s",
                         (cmd.input["risk"], cmd.input["case"]))
        return {"version": row[0] + 1}

    @pay.lookup
    async def find(cmd: Any) -> dict[str, str] | None:
        async with await psycopg.AsyncConnection.connect(settings.dsn, autocommit=True) as provider:
            row = await (await provider.execute("SELECT charge_id FROM ext_provider WHERE wf = %s AND key = %s "
                                                "ORDER BY n LIMIT 1", (wf, cmd.idempotency_key))).fetchone()
        return None if row is None else {"charge_id": row[0]}

    return consumer


def make_coordinator(settings: Settings) -> Consumer:
    """A coordinator of workflow <id>: ``pay`` (an external transaction, through the executor),
    then ``note``; its policy from RELAY_SAGA_POLICY."""
    from relay.saga import build_workflow
    from relay.saga.coordinator import SagaCoordinator

    wf = os.environ["SAGA_WF"]
    workflow = build_workflow({"id": wf, "steps": {
        "pay": {"type": "worker", "topic": f"{wf}.pay", "input": {"amount": "${input.amount}"}, "side_effect": True,
                "effect": "external_transaction", "no_rollback_reason": "the test's provider cannot refund"},
        "note": {"type": "worker", "topic": f"{wf}.note", "depends_on": ["pay"], "effect": "internal_write"}}})
    cases = build_workflow({"id": f"{wf}_case", "steps": {
        "update": {"type": "worker", "topic": f"{wf}.case", "effect": "internal_write",
                   "input": {"case": "${input.case}", "risk": "${input.risk}"},
                   "expected_version": "${input.version}"}}})
    return SagaCoordinator([workflow, cases], name=f"ext-coordinator-{wf}").consumer


def send_command(dsn: str, wf: str, step: str, key: str, payload: dict[str, Any], command_id: str | None = None,
                 ) -> str:
    """Write one command to ``<wf>.<step>`` as a coordinator would; its command id."""
    command_id = command_id or f"{key}/{uuid.uuid4().hex[:6]}"
    cmd = Dispatch(command_id, key.split("/")[0], step, 1, f"{wf}.{step}", payload, key)
    events = wire.encode(cmd, wire.Envelope(wf, correlation_id=cmd.run_id, causation_id="test"))
    with psycopg.connect(dsn) as conn, conn.transaction():
        write_many(conn, events, schemas=None)
    return command_id


def replies(dsn: str, command_id: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT payload FROM outbox WHERE type = 'SagaReply' AND payload->>'command_id' = %s",
                            (command_id,)).fetchall()
    return [r[0] for r in rows]
