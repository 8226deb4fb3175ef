"""Several records handled in one Postgres transaction (group commit), without one failure
sinking the others.

A lane that finds several records queued takes them together (relay.consume.lanes). For a
``inbox="postgres"`` subscription the pipeline then opens one transaction for the run of
*source-topic* records (:func:`relay.consume.group_commit.settle_all`): each event's claim
and handler statements run in it directly (no savepoint: a round trip saved twice per event), so

- a failing event is not routed inside the batch: the batch is rolled back (:class:`Abort`), the
  events that had succeeded before it run again in a new transaction, then the failing one takes
  the ordinary path alone (its own transaction, its retry / dead-letter route, its key parked),
  then the records after it go on. Only events whose effects were in the rolled-back transaction
  run again (a dead letter or a forward made during the batch is not repeated), so per-key order
  holds; a handler's side effects outside Postgres may run twice, as at-least-once allows;
- what depends on the commit waits for it: an event is recorded in the table inbox (and counted
  as handled) only after the transaction committed (:attr:`Batch.deferred`);
- if COMMIT (or a batch handler's call) fails, nothing of the transaction happened: the events
  that had succeeded in it are handled again in halves, each half a batch of its own, a half that
  fails splitting again, until one event is alone on the ordinary path (their claims rolled back);
- retry-stage records never join a batch: their parking bookkeeping must not run ahead of a commit.
One commit per batch instead of per event; the order of events within a key is unchanged.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

CURRENT: ContextVar["Batch | None"] = ContextVar("relay_batch", default=None)


@dataclass
class Batch:
    """The open transaction of a batch, and what waits for its commit."""

    conn: Any  # the connection, inside the batch's transaction
    index: int = 0  # the item being handled (set by the driver)
    fresh: list[int] = field(default_factory=list)  # items whose effects this transaction holds
    deferred: list[tuple[int, Callable[[], None]]] = field(default_factory=list)  # run after COMMIT
    # ids claimed up front in one statement (relay.consume.pg): id -> claimed now (False: an earlier
    # transaction had it); None: each event claims its own id
    claims: dict[str, bool] | None = None
    used: set[str] = field(default_factory=set)  # pre-claimed ids whose event was handled in this batch
    prepare: Callable[[list[str]], Awaitable[None]] | None = None  # claim these ids up front
    collected: list[Any] = field(default_factory=list)  # events for a batch handler, called at the end
    pipeline: Any = None  # the connection's psycopg pipeline (Postgres batches)
    calls_handler: bool = False  # a batch handler's batch: one call with ``collected`` when it ends
    call_s: float | None = None  # how long that call took (the handler's latency, observed once)
    outbox: list[Any] = field(default_factory=list)  # rows of TxOutbox.write_later: one INSERT before COMMIT

    async def call(self, handler_call: Awaitable[object]) -> None:
        """Await the batch handler's call, noting how long it took (``call_s``)."""
        started = time.perf_counter()
        await handler_call
        self.call_s = time.perf_counter() - started

    def collect(self, event: Any) -> bool:
        """Keep ``event`` for the batch handler; False: a copy of one kept already (a duplicate)."""
        if event.id in self.used:
            return False
        self.used.add(event.id)
        self.collected.append(event)
        return True

    def take_claim(self, event_id: str) -> bool | None:
        """The up-front claim of ``event_id``: True (fresh: handle it), False (handled before, or
        already in this batch), None (not claimed up front: claim it the ordinary way)."""
        if self.claims is None or event_id not in self.claims:
            return None
        if event_id in self.used:
            return False
        self.used.add(event_id)
        return self.claims[event_id]

    def after_commit(self, action: Callable[[], None], *, fresh: bool = True) -> None:
        """Run ``action`` once the batch committed; ``fresh``: the current item's effect is in
        this transaction (it is handled again if the transaction rolls back)."""
        if fresh:
            self.fresh.append(self.index)
        self.deferred.append((self.index, action))


class Abort(Exception):
    """An event failed inside a batch: roll the batch back and handle that event alone."""
