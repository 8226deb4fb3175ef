"""Group commit for the Postgres inbox: the driver of :mod:`relay.consume.batch`'s contract.

:func:`settle_all` settles a lane's records in order through a :class:`~relay.consume.pipeline.Pipeline`;
with ``open_batch`` (Postgres-inbox subscriptions), runs of source-topic records share one
transaction. See relay.consume.batch for what happens on a failure or a failed COMMIT.
"""

from __future__ import annotations

import logging
from enum import Enum
from typing import Callable, Sequence, TypeVar

from relay.consume.batch import CURRENT, Abort, Batch
from relay.consume.pipeline import OpenBatch, Pipeline, Record, header_list
from relay.crashpoints import CrashPoint, reach
from relay.handling.event import event_id_of

log = logging.getLogger("relay.consumer")
T = TypeVar("T")


class _Step(Enum):
    """How far a batch got when something failed."""

    BEGIN = "begin"  # opening the transaction or claiming its ids: nothing happened yet
    BODY = "body"  # handling its records: only an Abort is expected here
    COMMIT = "commit"  # closing it (COMMIT, or the batch handler's call)


async def settle_all(p: Pipeline, items: Sequence[T], record_of: Callable[[T], Record], bind: Callable[[T], None],
                     open_batch: OpenBatch | None) -> None:
    """``p.settled`` for each item in order; runs of source-topic records share one
    transaction when ``open_batch`` is given (relay.consume.batch). ``bind(item)`` runs before
    each item is handled (and before its deferred inbox record)."""
    i = 0
    try:
        while i < len(items):
            if open_batch is None or len(items) - i < 2 or record_of(items[i]).topic != p.topic:
                bind(items[i])
                await p.settled_quietly(record_of(items[i]))
                i += 1
            else:
                i = await _one_transaction(p, items, i, record_of, bind, open_batch)
    finally:
        p.tally.flush()


async def _one_transaction(p: Pipeline, items: Sequence[T], i: int, record_of: Callable[[T], Record],
                           bind: Callable[[T], None], open_batch: OpenBatch) -> int:
    """Handle the run of source records from ``i`` in one transaction; the index after the
    last one handled (see relay.consume.batch for failures)."""
    batch: Batch | None = None
    start, end = i, i
    while end < len(items) and record_of(items[end]).topic == p.topic:
        end += 1
    step = _Step.BEGIN
    try:
        async with open_batch() as batch:
            if batch.prepare is not None:  # one statement claims every id of the run
                ids = [event_id_of(header_list(record_of(items[n]))) for n in range(start, end)]
                await batch.prepare([i for i in ids if i is not None])
            step = _Step.BODY
            token = CURRENT.set(batch)
            try:
                for i in range(start, end):
                    batch.index = i
                    bind(items[i])
                    await p.settled(record_of(items[i]))
            finally:
                CURRENT.reset(token)
            step = _Step.COMMIT
    except Abort:  # rolled back: its successful events again, then the failing one alone
        assert batch is not None
        await _again(p, items, batch.fresh, record_of, bind, open_batch)
        bind(items[batch.index])
        await p.settled(record_of(items[batch.index]))
        return batch.index + 1
    except Exception as exc:  # noqa: BLE001 - see each step
        if step is _Step.BODY:  # the pipeline itself failed (its port crashed): leave the records unacked
            raise
        if step is _Step.BEGIN:  # BEGIN or the up-front claim failed: nothing happened; this one alone
            bind(items[start])
            await p.settled(record_of(items[start]))
            return start + 1
        assert batch is not None  # COMMIT (or the batch handler) failed: nothing of the transaction happened
        log.warning("%s: a batch of %d records failed as a whole (%s: %s: its COMMIT, or the batch handler); "
                    "handling its %d successful events again, in halves", p.topic, end - start,
                    type(exc).__name__, exc, len(batch.fresh))
        await _halves(p, items, batch.fresh, record_of, bind, open_batch)
        return end
    reach(CrashPoint.AFTER_COMMAND_COMMIT_BEFORE_RESPONSE)  # committed; nothing acked yet
    for n, action in batch.deferred:
        bind(items[n])
        action()
    p.committed_batch(len(batch.fresh), batch.call_s)
    return end


async def _halves(p: Pipeline, items: Sequence[T], indexes: list[int], record_of: Callable[[T], Record],
                  bind: Callable[[T], None], open_batch: OpenBatch) -> None:
    """Handle ``items[indexes]`` again after their batch failed as a whole, not knowing which
    event made it fail: each half in a batch of its own, in order (a half that fails too splits
    again; one event runs alone, on the ordinary path). One bad event among n costs about
    2 log2(n) transactions instead of n; per-key order holds because the first half is settled,
    retries and parking included, before the second starts."""
    if len(indexes) < 2:
        await _again(p, items, indexes, record_of, bind, None)
        return
    middle = len(indexes) // 2
    await _again(p, items, indexes[:middle], record_of, bind, open_batch)
    await _again(p, items, indexes[middle:], record_of, bind, open_batch)


async def _again(p: Pipeline, items: Sequence[T], indexes: list[int], record_of: Callable[[T], Record],
                 bind: Callable[[T], None], open_batch: OpenBatch | None) -> None:
    """Handle ``items[indexes]`` again (their effects were rolled back), as a batch if possible."""
    if indexes:
        await settle_all(p, [items[n] for n in indexes], record_of, bind, open_batch)
