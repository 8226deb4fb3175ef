"""A fan-out workflow on the real stack: a for_each over the input's items (``max_parallel`` 3,
cap 10), then a parallel of four scans (``max_parallel`` 2). ``relay worker
tests.support.saga_fanout:make_coordinator`` / ``...:make_participants`` with SAGA_WF=<id>."""

from __future__ import annotations

import os

from relay import Consumer, Settings
from relay.consume.pg import Tx
from relay.saga import build_workflow
from relay.saga.coordinator import SagaCoordinator
from relay.saga.model import Workflow
from relay.saga.participant import Command

ITEMS_PARALLEL, SCANS_PARALLEL, CAP = 3, 2, 10


def fanout_workflow(wf: str) -> Workflow:
    scan = {"type": "worker", "topic": f"{wf}.scan"}
    return build_workflow({"id": wf, "steps": {
        "fan": {"type": "for_each", "topic": f"{wf}.item", "items": "${input.items}", "max_parallel": ITEMS_PARALLEL,
                "max_items": CAP, "input": {"i": "${item}"}},
        "scans": {"type": "parallel", "depends_on": ["fan"], "steps": ["a", "b", "c", "d"],
                  "max_parallel": SCANS_PARALLEL},
        "a": scan, "b": scan, "c": scan, "d": scan,
    }})


def make_coordinator(settings: Settings) -> Consumer:
    wf = os.environ["SAGA_WF"]
    return SagaCoordinator([fanout_workflow(wf)], name=f"relay-saga-{wf}").consumer


def make_participants(settings: Settings) -> Consumer:
    wf = os.environ["SAGA_WF"]
    consumer = Consumer(f"relay-saga-participants-{wf}")

    @consumer.participant(f"{wf}.item")
    async def item(cmd: Command, tx: Tx) -> dict:
        return {"done": cmd.input["i"]}

    @consumer.participant(f"{wf}.scan")
    async def scan(cmd: Command, tx: Tx) -> dict:
        return {"scanned": cmd.step}

    return consumer
