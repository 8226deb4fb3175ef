"""An order saga on the real stack: charge -> reserve -> ship, shipping refused for orders marked
``fail``; the coordinator and the participants are two `relay worker` apps.

``relay worker tests.support.saga_app:make_coordinator`` / ``...:make_participants`` with
SAGA_WF=<workflow id> (unique per test: its topics are <id>.charge, <id>.refund, ...), and
SAGA_VERSION=2 for the changed definition (a notify step after shipping). Each
participant's effect is a row in ``saga_effects`` (no unique constraint: an effect that ran twice
would show), written in the command's inbox transaction.
"""

from __future__ import annotations

import os

import psycopg

from relay import Consumer, Settings, Tx
from relay.errors import StepFailed
from relay.saga import build_workflow
from relay.saga.coordinator import SagaCoordinator
from relay.saga.model import Workflow
from relay.saga.participant import Command

SCHEMA = """
CREATE TABLE IF NOT EXISTS saga_effects (n bigserial PRIMARY KEY, workflow text NOT NULL, kind text NOT NULL,
                                         run_id text NOT NULL, idempotency_key text NOT NULL);
CREATE INDEX IF NOT EXISTS saga_effects_wf ON saga_effects (workflow);
"""
STEPS = ("charge", "refund", "reserve", "release", "ship", "notify")


def prepare(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(7263)")
            conn.execute(SCHEMA)


def order_workflow(wf: str, version: int = 1) -> Workflow:
    """Version 2 adds a ``notify`` step after shipping (a changed definition: a new hash)."""
    extra = {"notify": {"type": "worker", "topic": f"{wf}.notify", "depends_on": ["ship"]}} if version == 2 else {}
    return build_workflow({"id": wf, "steps": {**extra,
        "charge": {"type": "worker", "topic": f"{wf}.charge", "input": {"amount": "${input.amount}"},
                   "side_effect": True, "timeout_sec": 20,
                   "compensation": {"topic": f"{wf}.refund", "input": {"charge": "${steps.charge.output.charge_id}"}}},
        "reserve": {"type": "worker", "topic": f"{wf}.reserve", "depends_on": ["charge"], "side_effect": True,
                    "timeout_sec": 20, "compensation": {"topic": f"{wf}.release"}},
        "ship": {"type": "worker", "topic": f"{wf}.ship", "depends_on": ["reserve"], "timeout_sec": 20,
                 "input": {"fail": "${input.fail}"}, "retry": {"max_retries": 2, "initial_backoff_sec": 0.2}},
    }})


def make_coordinator(settings: Settings) -> Consumer:
    wf = os.environ["SAGA_WF"]
    version = int(os.environ.get("SAGA_VERSION", "1"))
    return SagaCoordinator([order_workflow(wf, version)], name=f"relay-saga-{wf}").consumer


def make_participants(settings: Settings) -> Consumer:
    wf = os.environ["SAGA_WF"]
    consumer = Consumer(f"relay-saga-participants-{wf}")

    async def effect(kind: str, cmd: Command, tx: Tx) -> None:
        await tx.execute("INSERT INTO saga_effects (workflow, kind, run_id, idempotency_key) VALUES (%s, %s, %s, %s)",
                         (wf, kind, cmd.run_id, cmd.idempotency_key))

    @consumer.participant(f"{wf}.charge")
    async def charge(cmd: Command, tx: Tx) -> dict:
        await effect("charge", cmd, tx)
        return {"charge_id": f"ch-{cmd.run_id[:8]}"}

    def record_only(kind: str):  # a participant whose whole effect is its row
        async def handle(cmd: Command, tx: Tx) -> None:
            await effect(kind, cmd, tx)
        handle.__name__ = kind
        return handle

    for kind in ("refund", "reserve", "release", "notify"):
        consumer.participant(f"{wf}.{kind}")(record_only(kind))

    @consumer.participant(f"{wf}.ship")
    async def ship(cmd: Command, tx: Tx) -> None:
        if cmd.input.get("fail"):
            await effect("ship-attempt", cmd, tx)  # rolled back with the failure: must never show
            raise StepFailed("no courier for this address")
        await effect("ship", cmd, tx)

    return consumer
