"""The demo's order saga (relay.examples.order_saga) under a per-test workflow id, as two
`relay worker` apps: ``relay worker tests.support.saga_app:make_coordinator`` / ``...:make_participants``
with SAGA_WF=<workflow id> (unique per test: its topics are <id>.charge, <id>.refund, ...), and
SAGA_VERSION=2 for the changed definition (a notify step after shipping). Effects are rows in
``demo_saga_effects`` (workflow = the test's id).
"""

from __future__ import annotations

import os

import psycopg

from relay import Consumer, Settings
from relay.examples.order_saga import STEPS, add_order_participants, ensure_schema, order_workflow
from relay.saga.coordinator import SagaCoordinator

__all__ = ["STEPS", "order_workflow", "prepare", "make_coordinator", "make_participants"]


def prepare(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_schema(conn)


def make_coordinator(settings: Settings) -> Consumer:
    wf = os.environ["SAGA_WF"]
    version = int(os.environ.get("SAGA_VERSION", "1"))
    return SagaCoordinator([order_workflow(wf, version=version)], name=f"relay-saga-{wf}").consumer


def make_participants(settings: Settings) -> Consumer:
    wf = os.environ["SAGA_WF"]
    return add_order_participants(Consumer(f"relay-saga-participants-{wf}"), wf)
