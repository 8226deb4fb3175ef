"""Start a saga run inside the caller's own business transaction.

    with conn.transaction():
        conn.execute("INSERT INTO orders ...")
        run_id = relay.saga.start(conn, "order", input={"order_id": "o-7", "amount": 30},
                                  idempotency_key="o-7", business_key="o-7")

"order placed" and "saga started" commit together (the start is an outbox event on the run's
key). The run id follows from (workflow, idempotency key): starting again with the same key and
the same input returns the same run id and writes nothing; the same key with another input raises
:class:`relay.errors.IdempotencyConflict` naming the key (the outbox writer's request-hash rule).
That holds as long as the start's outbox row is kept (``relay outbox prune``); after it, a second
start of an existing run is ignored by the coordinator.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from relay.outbox.writer import awrite, write
from relay.saga import wire


def _event(workflow: str, input: Mapping[str, Any], idempotency_key: str, business_key: str | None,
           initiator: str | None) -> dict[str, Any]:
    payload = {"workflow": workflow, "input": dict(input), "business_key": business_key}
    if initiator is not None:
        payload["initiator"] = initiator
    return dict(aggregatetype=wire.saga_aggregate(workflow), aggregateid=wire.run_id_for(workflow, idempotency_key),
                type=wire.SagaEvent.START.value, payload=payload, idempotency_key=idempotency_key, schemas=None)


def start(conn: psycopg.Connection[Any], workflow: str, *, input: Mapping[str, Any], idempotency_key: str,
          business_key: str | None = None, initiator: str | None = None) -> str:
    """Write the run's start in ``conn``'s transaction; return the run id. ``initiator``: who
    started it (a policy's four-eyes rule keeps them from approving its actions)."""
    event = _event(workflow, input, idempotency_key, business_key, initiator)
    write(conn, **event)
    return str(event["aggregateid"])


async def astart(conn: psycopg.AsyncConnection[Any], workflow: str, *, input: Mapping[str, Any],
                 idempotency_key: str, business_key: str | None = None, initiator: str | None = None) -> str:
    """Async twin of :func:`start`."""
    event = _event(workflow, input, idempotency_key, business_key, initiator)
    await awrite(conn, **event)
    return str(event["aggregateid"])
