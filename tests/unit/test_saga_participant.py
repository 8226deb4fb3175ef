"""The participant wrapper's savepoint choice, without I/O: no savepoint per command in a batch
while steps succeed; a StepFailed escapes the batch (the driver runs the command again alone);
after one, savepoints again for a while."""

import asyncio

import pytest

from relay.errors import StepFailed
from relay.handling.event import Event
from relay.saga import participant, wire


class FakeOutbox:
    def __init__(self, tx):
        self.tx = tx

    async def write_later(self, events, schemas=None):
        self.tx.log.extend(("reply", e.payload["ok"]) for e in events)


class FakeTx:
    def __init__(self, pipelined: bool):
        self.pipelined, self.log, self.outbox = pipelined, [], None
        self.outbox = FakeOutbox(self)

    async def send(self, sql, params=None):
        self.log.append(sql.split()[0])

    async def execute(self, sql, params=None):
        self.log.append(sql.split()[0])


def command(step_ok: bool) -> Event:
    payload = {"command_id": "r/ship/1", "run_id": "r", "step": "ship", "attempt": 1, "idempotency_key": "r/ship",
               "reply_to": "saga.order", "input": {"ok": step_ok}}
    return Event(id="e", type=wire.SagaCommand.COMMAND.value, key="r", payload=payload, topic="t", partition=0,
                 offset=0)


async def ship(cmd, tx):
    tx.log.append("effect")
    if not cmd.input["ok"]:
        raise StepFailed("no courier")


def test_a_batch_takes_savepoints_only_for_a_while_after_a_step_failed():
    now = [0.0]
    handle = participant._Participant(ship, clock=lambda: now[0])

    def run(ok: bool):
        tx = FakeTx(pipelined=True)
        asyncio.run(handle(command(ok), tx))
        return tx.log

    assert run(True) == ["effect", ("reply", True)], "no savepoint while steps succeed"
    with pytest.raises(StepFailed):  # escapes: the batch rolls back, the command runs again alone
        run(False)
    now[0] += 1
    assert run(False) == ["SAVEPOINT", "effect", "ROLLBACK", "RELEASE", ("reply", False)], "careful now"
    assert run(True) == ["SAVEPOINT", "effect", "RELEASE", ("reply", True)]
    now[0] += participant.CAREFUL_S
    assert run(True) == ["effect", ("reply", True)], "the careful window ended"
