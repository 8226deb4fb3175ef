"""Participants that act on the outside world: the side-effect executor (issue 17).

    @payments.effect("payment.charge", effect="external_transaction")
    async def charge(command: Command) -> dict:
        return await psp.charge(command.input["amount"], idempotency_key=command.idempotency_key)

    @charge.lookup
    async def find_charge(command: Command) -> dict | None:   # None: the target never got it
        return await psp.find(idempotency_key=command.idempotency_key)

Each command's effect has a record in ``effects`` under its idempotency key, bound to the hash of
its request (:func:`relay.saga.gate.payload_hash`); :mod:`relay.governance.effects` decides:

- a new key: the record says ``started`` (committed on its own, before the call), the target is
  called, and ``committed`` with the result commits with the inbox claim and the reply;
- the key committed already (a retried step, a command sent again): the first result, no call;
- the key used for another request: refused (StepFailed naming both hashes), no call;
- ``started`` or ``ambiguous`` (a crash after the call, or a call that timed out): the target is
  asked through the lookup; found: committed with its result; never got it: sent again; cannot
  tell: still ambiguous, the step fails retriably (its retries ask again) and the record is
  listed by ``relay effects list --state ambiguous`` for a person.

The call raises ``StepFailed`` when the target refused (failed, no effect), and
``EffectUnknown`` or ``TimeoutError`` when it may have acted (ambiguous). A worker with effects
also reconciles their ambiguous records in the background every ``RECONCILE_S``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from relay.consume.pg import Tx
from relay.crashpoints import CrashPoint, reach
from relay.errors import EffectUnknown, RelayError, StepFailed
from relay.governance.effects import Found, Next, Record, Step, after_lookup, begin
from relay.governance.lifecycle import MOVES, EffectState, IllegalTransition
from relay.policy.model import EffectClass
from relay.saga.gate import payload_hash
from relay.saga.participant import Command

log = logging.getLogger("relay.saga.effects")
RECONCILE_S = 5.0
UNSURE = (EffectUnknown, TimeoutError, asyncio.TimeoutError)

LOAD = ("SELECT idempotency_key, request_hash, state, result, error, retriable FROM effects "
        "WHERE idempotency_key = %s")
START = """
INSERT INTO effects AS e (idempotency_key, request_hash, request, state, effect_class, target, run_id, step,
                          command_id, actor, attempts, history)
VALUES (%(key)s, %(hash)s, %(request)s, 'started', %(class)s, %(target)s, %(run)s, %(step)s, %(command)s, %(actor)s,
        1, jsonb_build_array(jsonb_build_object('state', 'started', 'at', now(), 'command_id', %(command)s::text)))
ON CONFLICT (idempotency_key) DO UPDATE SET state = 'started', attempts = e.attempts + 1,
    command_id = EXCLUDED.command_id, actor = EXCLUDED.actor, updated_at = now(),
    history = e.history || EXCLUDED.history
WHERE e.request_hash = EXCLUDED.request_hash AND e.state = ANY(%(from)s)
RETURNING e.attempts
"""
MOVE = """
UPDATE effects SET state = %(to)s, result = coalesce(%(result)s, result), error = %(error)s,
    retriable = %(retriable)s, updated_at = now(),
    history = history || jsonb_build_array(jsonb_build_object('state', %(to)s::text, 'at', now(), 'why', %(why)s::text))
WHERE idempotency_key = %(key)s AND state = ANY(%(from)s)
RETURNING 1
"""
AMBIGUOUS_OF = """
SELECT idempotency_key, request, run_id, step, command_id FROM effects
WHERE state = 'ambiguous' AND target = %s ORDER BY updated_at LIMIT 100
"""


def _record(row: Any) -> Record | None:
    return None if row is None else Record(row[0], row[1], EffectState(row[2]), row[3], row[4], row[5])


async def _move(conn: Any, key: str, to: EffectState, frm: tuple[EffectState, ...], *, why: str,
                result: Any = None, error: str | None = None, retriable: bool = False) -> None:
    cur = await conn.execute(MOVE, {"to": to.value, "from": [s.value for s in frm], "key": key, "why": why,
                                    "result": None if result is None else json.dumps(result), "error": error,
                                    "retriable": retriable})
    if await cur.fetchone() is None:
        row = await (await conn.execute("SELECT state FROM effects WHERE idempotency_key = %s", (key,))).fetchone()
        if row is not None and to not in MOVES[EffectState(row[0])]:
            raise IllegalTransition(key, EffectState(row[0]), to)  # names both states and the allowed moves
        raise RelayError(f"side effect {key}: moving to {to.value} found it no longer {'/'.join(s.value for s in frm)} "
                         "(changed meanwhile); the command is handled again", retriable=True)


@dataclass
class ExternalEffect:
    """The participant handler of one effect (see the module); made by ``Consumer.effect``."""

    topic: str
    send: Callable[[Command], Awaitable[Any]]
    effect: EffectClass
    actor: str = ""
    find: Callable[[Command], Awaitable[Any]] | None = None
    pool: Any = field(default=None, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    async def started(self, ctx: Any) -> None:
        """Startup hook: the worker's pool, and the background reconciler."""
        self.pool = ctx.pool
        self._task = asyncio.create_task(self.reconcile_forever(), name=f"relay-effects-{self.topic}")

    async def stopped(self, ctx: Any) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def lookup(self, fn: Callable[[Command], Awaitable[Any]]) -> Callable[[Command], Awaitable[Any]]:
        """Register how to ask the target whether it has the effect: a result, None (never got
        it), or raise EffectUnknown (cannot tell)."""
        self.find = fn
        return fn

    async def __call__(self, command: Command, tx: Tx) -> Any:
        key, digest = command.idempotency_key, payload_hash(self.topic, command.input)
        async with self.pool.connection() as conn:
            record = _record(await (await conn.execute(LOAD, (key,))).fetchone())
        nxt = begin(record, key, digest)
        found: Any = None
        if nxt.step is Step.RECONCILE:
            nxt, found = await self._reconcile(command, record)
        if nxt.step is Step.REFUSE:
            raise StepFailed(nxt.reason)
        if nxt.step is Step.FAIL:
            unsure = record is not None and record.state in (EffectState.STARTED, EffectState.AMBIGUOUS)
            raise StepFailed(nxt.reason, retriable=unsure, uncertain=unsure)  # its retries ask again
        if nxt.step is Step.RETURN:
            if record is not None and record.state is not EffectState.COMMITTED:  # reconciled: it happened
                await _move(tx, key, EffectState.COMMITTED, (record.state,), why=nxt.reason, result=found)
                return found
            return record.result if record is not None else None
        return await self._send(command, tx, digest)

    async def _reconcile(self, command: Command, record: Record | None) -> tuple[Next, Any]:
        assert record is not None
        if self.find is None:
            if record.state is EffectState.STARTED:  # listed for a person: it may have happened
                await self._mark(record.key, EffectState.AMBIGUOUS, (EffectState.STARTED,), why="no lookup to ask")
            return Next(Step.FAIL, f"side effect {record.key} is {record.state.value} and {self.topic} has no lookup "
                                   "to ask the target: it stays ambiguous for a person (relay effects list)"), None
        try:
            result = await self.find(command)
        except UNSURE as exc:
            await self._mark(record.key, EffectState.AMBIGUOUS, (EffectState.STARTED, EffectState.AMBIGUOUS),
                             why=f"lookup could not tell: {exc}")
            return after_lookup(Found.UNKNOWN), None
        return after_lookup(Found.NO if result is None else Found.YES), result

    async def _send(self, command: Command, tx: Tx, digest: str) -> Any:
        key = command.idempotency_key
        async with self.pool.connection() as conn:  # committed before the call: a crash after it leaves a trace
            cur = await conn.execute(START, {
                "key": key, "hash": digest, "request": json.dumps(command.input), "class": self.effect.value,
                "target": self.topic, "run": command.run_id, "step": command.step, "command": command.command_id,
                "actor": self.actor, "from": ["proposed", "validated", "approved", "started", "ambiguous", "failed"]})
            if await cur.fetchone() is None:
                raise RelayError(f"side effect {key}: its record changed before the call; handled again",
                                 retriable=True)
        try:
            result = await self.send(command)
        except StepFailed as refused:  # the target refused: nothing happened (retriable: for now)
            await self._mark(key, EffectState.FAILED, (EffectState.STARTED,), why=refused.reason, error=refused.reason,
                             retriable=refused.retriable)
            raise
        except UNSURE as exc:
            why = f"{type(exc).__name__}: {exc}"
            await self._mark(key, EffectState.AMBIGUOUS, (EffectState.STARTED,), why=why, error=why)
            raise StepFailed(f"side effect {key} is ambiguous ({why}): the target is asked before anything is sent "
                             "again", retriable=True, uncertain=True) from None
        reach(CrashPoint.AFTER_EXTERNAL_SEND_BEFORE_RECORD)
        await _move(tx, key, EffectState.COMMITTED, (EffectState.STARTED,), why="the target answered", result=result)
        return result

    async def _mark(self, key: str, to: EffectState, frm: tuple[EffectState, ...], *, why: str,
                    error: str | None = None, retriable: bool = False) -> None:
        """A move committed on its own (a failure's savepoint would undo it in the inbox transaction)."""
        async with self.pool.connection() as conn:
            await _move(conn, key, to, frm, why=why, error=error, retriable=retriable)

    async def reconcile_round(self) -> int:
        """Ask the target about this effect's ambiguous records; the number resolved."""
        if self.find is None:
            return 0
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(AMBIGUOUS_OF, (self.topic,))).fetchall()
        resolved = 0
        for key, request, run_id, step, command_id in rows:
            command = Command(command_id or "", run_id or "", step or "", 0, key, request, False)
            try:
                result = await self.find(command)
            except UNSURE:
                continue
            if result is None:  # nothing happened: the step's next attempt may send it again
                await self._mark(key, EffectState.FAILED, (EffectState.AMBIGUOUS,),
                                 why="reconciled: the target never got it", error="the target never got it",
                                 retriable=True)
            else:
                async with self.pool.connection() as conn:
                    await _move(conn, key, EffectState.COMMITTED, (EffectState.AMBIGUOUS,),
                                why="reconciled: the target has it", result=result)
            resolved += 1
        return resolved

    async def reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(RECONCILE_S)
            try:
                n = await self.reconcile_round()
                if n:
                    log.info("effects of %s: %d ambiguous record(s) resolved", self.topic, n)
            except Exception:  # noqa: BLE001 - a database hiccup: the next round tries again
                log.warning("effects of %s: a reconciliation round failed", self.topic, exc_info=True)
