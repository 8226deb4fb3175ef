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
fails inside a batch may make the batch roll back and run again alone (see ``_Participant``), so
a handler that raises StepFailed may run twice for that command; its database writes count
once, and effects elsewhere are at least once, as for any handler.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from relay.consume.pg import Tx
from relay.crashpoints import CrashPoint, reach
from relay.errors import DecodeError, StaleVersion, StepFailed
from relay.handling.event import Event
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
    expected_version: Any = None  # the aggregate version the step expects (its expected_version), if any
    on_stale: str = "fail"        # the step's policy for a stale version: fail | retry

    def expect(self, current: Any) -> None:
        """Optimistic concurrency: raise :class:`StaleVersion` unless the aggregate's ``current``
        version is the one this command expects (read it ``FOR UPDATE`` first). Raised, it undoes
        the handler's writes, so a stale command is never applied; the step fails, or retries
        when it says ``on_stale: retry``. A command that expects nothing accepts any version."""
        if self.expected_version is not None and current != self.expected_version:
            raise StaleVersion(f"{self.step}: stale: the command expects version {self.expected_version!r}, the "
                               f"aggregate is at {current!r} (not applied)", retriable=self.on_stale == "retry")


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
                   str(p["idempotency_key"]), p.get("input"), event.type == wire.SagaCommand.COMPENSATION,
                   p.get("expected_version"), str(p.get("on_stale") or "fail"))


SAVEPOINT = "relay_participant"
# after a StepFailed escaped a batch, this long with a savepoint around each command again
CAREFUL_S = 10.0


class _Participant:
    """The consumer handler around a participant handler: runs it and writes its reply.

    A StepFailed undoes the handler's writes and is answered. Alone (its own transaction) a
    savepoint around the handler does that. In a batch, by default nothing: the StepFailed
    escapes, the batch rolls back (the writes of every event in it), its other events are handled
    again and this command runs again alone (relay.consume.batch's contract for any failure),
    where the savepoint applies. A savepoint around every command of a batch cost two statements
    and a subtransaction each (~25 % of the participants' CPU) for what is the exception. When
    steps do fail, this worker goes back to savepoints in batches for CAREFUL_S, so that a run of
    failing commands is not handled one rolled-back batch at a time."""

    def __init__(self, handler: ParticipantHandler, clock: Callable[[], float] = time.monotonic) -> None:
        self.handler, self.clock = handler, clock
        self.careful_until = float("-inf")
        self.__name__ = getattr(handler, "__name__", "participant")

    async def __call__(self, event: Event, tx: Tx) -> None:
        command = parse(event)
        careful = not tx.pipelined or self.clock() < self.careful_until
        try:
            if careful:
                async with _undo_point(tx):
                    output = await self.handler(command, tx)
            else:
                output = await self.handler(command, tx)
        except StepFailed as failed:
            if not careful:  # escapes: the batch rolls back, this command runs again alone
                self.careful_until = self.clock() + CAREFUL_S
                raise
            answer = wire.reply(event.payload, ok=False, error=failed.reason, retriable=failed.retriable,
                                uncertain=failed.uncertain)
        else:
            answer = wire.reply(event.payload, ok=True, output=output)
        # our envelope, no user schema; in a batch the replies go out as one INSERT before COMMIT
        await tx.outbox.write_later([answer], schemas=None)
        reach(CrashPoint.BEFORE_COMMAND_COMMIT)


@asynccontextmanager
async def _undo_point(tx: Tx) -> AsyncIterator[None]:
    """A savepoint around the handler: a StepFailed undoes its writes, the reply still commits.

    In a batch (pipeline mode) SAVEPOINT and RELEASE are queued like the handler's ``tx.send``
    statements, without a round trip each: psycopg's ``transaction()`` syncs the pipeline on
    entry and exit, which was an eighth of a busy participant's CPU. Any other exception rolls
    the whole batch back, so only a StepFailed needs the ROLLBACK TO."""
    if not tx.pipelined:
        async with tx.conn.transaction():
            yield
        return
    await tx.send(f"SAVEPOINT {SAVEPOINT}")
    try:
        yield
    except StepFailed:
        await tx.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
        await tx.send(f"RELEASE SAVEPOINT {SAVEPOINT}")
        raise
    await tx.send(f"RELEASE SAVEPOINT {SAVEPOINT}")


def wrap(handler: ParticipantHandler) -> Callable[[Event, Tx], Awaitable[None]]:
    """The consumer handler that runs ``handler`` and writes its reply (see :class:`_Participant`)."""
    return _Participant(handler)
