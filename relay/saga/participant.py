"""Saga participants: ordinary Postgres-inbox consumers of a step's topic that answer the run.

    @consumer.participant("payment.charge")
    async def charge(command: Command, tx: Tx) -> dict:
        await tx.execute("INSERT INTO charges ...", (command.idempotency_key, ...))
        return {"charge_id": ...}

The returned output goes back to the run as a ``SagaReply`` through ``tx.outbox``, in the
transaction of the participant's own change and of the inbox claim of the command (no 2PC): the
effect, the claim and the reply commit together. A command sent again (same command id) has the
same event id, so the inbox drops it. ``raise StepFailed(reason, retriable=...)`` answers with a
failure (the handler's own writes are rolled back, the reply commits); any other exception is an
infrastructure failure and takes the consumer's retry ladder like any handler's. A command that
fails inside a batch makes the batch roll back and runs again alone (see ``_undo_point``), so a
handler that raises StepFailed runs twice for that command; its database writes count once, and
effects elsewhere are at least once, as for any handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from relay.consume.pg import Tx
from relay.errors import DecodeError, StepFailed
from relay.handling.event import Event
from relay.outbox.writer import OutboxEvent
from relay.saga import wire


@dataclass(frozen=True)
class Command:
    command_id: str        # unique per attempt
    run_id: str
    step: str
    attempt: int
    idempotency_key: str   # stable across attempts of the step: key your effect by it
    input: Any
    compensation: bool     # True: undo the step's effect


ParticipantHandler = Callable[[Command, Tx], Awaitable[Any]]


def parse(event: Event) -> Command:
    p = event.payload
    if not isinstance(p, Mapping):
        raise DecodeError(f"saga command {event.id}: payload = {p!r:.80}; expected a JSON object")
    missing = [k for k in ("command_id", "run_id", "step", "attempt", "idempotency_key") if k not in p]
    if missing or event.type not in (wire.SagaCommand.COMMAND, wire.SagaCommand.COMPENSATION):
        raise DecodeError(f"saga command {event.id}: type {event.type!r}, fields missing {missing}; expected a "
                          "SagaCommand or SagaCompensation with command_id, run_id, step, attempt, idempotency_key")
    return Command(str(p["command_id"]), str(p["run_id"]), str(p["step"]), int(p["attempt"]),
                   str(p["idempotency_key"]), p.get("input"), event.type == wire.SagaCommand.COMPENSATION)


async def _answer(handler: ParticipantHandler, command: Command, event: Event, tx: Tx) -> OutboxEvent:
    """Run the handler; its reply. A StepFailed undoes the handler's writes and is answered.

    Alone (its own transaction): a savepoint around the handler. In a batch: none; the StepFailed
    escapes, the batch rolls back (the writes of every event in it), its other events are
    handled again and this command runs again alone (relay.consume.batch's contract for any
    failure), where the savepoint applies. A savepoint per command in a batch cost two
    statements and a subtransaction each, for what is the exception: the command that fails."""
    if tx.pipelined:
        output = await handler(command, tx)
        return wire.reply(event.payload, ok=True, output=output)
    try:
        async with tx.conn.transaction():
            output = await handler(command, tx)
    except StepFailed as failed:
        return wire.reply(event.payload, ok=False, error=failed.reason, retriable=failed.retriable)
    return wire.reply(event.payload, ok=True, output=output)


def wrap(handler: ParticipantHandler) -> Callable[[Event, Tx], Awaitable[None]]:
    """The consumer handler that runs ``handler`` and writes its reply."""
    async def on_command(event: Event, tx: Tx) -> None:
        answer = await _answer(handler, parse(event), event, tx)
        # our envelope, no user schema; in a batch the replies go out as one INSERT before COMMIT
        await tx.outbox.write_later([answer], schemas=None)
    on_command.__name__ = getattr(handler, "__name__", "participant")
    return on_command
