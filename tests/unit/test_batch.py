"""Batches of the Postgres inbox, as rules (relay.consume.batch): one transaction per run of
source records, a failure rolls it back and only that event takes the retry path, a failed
COMMIT re-runs the batch's events alone. A fake database: effects stay pending until COMMIT."""

import asyncio
import uuid
from contextlib import asynccontextmanager

from relay import Consumer, Event
from relay.consume.batch import CURRENT, Batch
from relay.consume.group_commit import settle_all
from relay.testing import Harness


class FakeDb:
    def __init__(self, fail=(), fail_commit=0):
        self.committed, self.transactions = [], 0
        self.fail, self.fail_commit = {n: times for n, times in fail}, fail_commit

    @asynccontextmanager
    async def open_batch(self):
        batch = Batch(conn=[])
        self.transactions += 1
        yield batch  # an exception here propagates: the transaction rolls back (nothing kept)
        if self.fail_commit:
            self.fail_commit -= 1
            raise ConnectionError("server closed the connection during COMMIT")
        self.committed += batch.conn

    async def invoke(self, event: Event, attempt: int) -> bool:
        n = event.payload["n"]
        if self.fail.get(n, 0) > 0:
            self.fail[n] -= 1
            raise TimeoutError(f"{n} timed out")
        batch = CURRENT.get()
        if batch is not None:
            batch.conn.append(n)
        else:
            self.transactions += 1
            self.committed.append(n)
        return True


def setup(db):
    consumer = Consumer("batch")
    consumer.subscribe("order")(lambda event: None)
    h = Harness(consumer)
    pipeline = h.pipelines["outbox.event.order"]
    pipeline.invoke = db.invoke
    return h, pipeline


def records(h, keys):
    out = []
    for n, key in enumerate(keys, 1):
        out.append(h._append("outbox.event.order", key.encode(), f'{{"n": {n}}}'.encode(),
                             [("id", str(uuid.uuid4()).encode())]))
    h._cursor["outbox.event.order"] = len(h.topics["outbox.event.order"])  # taken by the "lane"
    return out


def handled(h):
    return h.registry.get_sample_value("relay_events_handled_total", {"topic": "outbox.event.order"}) or 0


def run_batch(h, pipeline, db, recs):
    async def main():
        await settle_all(pipeline, recs, lambda r: r, lambda r: None, db.open_batch)
        await h.advance(3600)
    asyncio.run(asyncio.wait_for(main(), 10))


def test_one_transaction_and_the_inbox_records_after_commit():
    db = FakeDb()
    h, pipeline = setup(db)
    run_batch(h, pipeline, db, records(h, "ABCDE"))
    assert db.committed == [1, 2, 3, 4, 5] and db.transactions == 1 and handled(h) == 5


def test_a_failure_rolls_back_and_only_the_failing_event_retries_in_key_order():
    db = FakeDb(fail=[(3, 2)])  # fails in the batch, and again alone: a retry stage
    h, pipeline = setup(db)
    run_batch(h, pipeline, db, records(h, "ABKCK"))  # 3 and 5 share key K
    assert db.committed.index(3) < db.committed.index(5), "5 waited behind its key's failed 3"
    assert sorted(db.committed) == [1, 2, 3, 4, 5] and len(db.committed) == 5, "each effect once"
    assert [stage for _, stage in h.retried] == [1] and handled(h) == 5


def test_a_failed_commit_runs_the_events_again_in_halves():
    db = FakeDb(fail_commit=1)
    h, pipeline = setup(db)
    run_batch(h, pipeline, db, records(h, "ABC"))
    # the failed transaction, then A alone and B, C in a batch of their own
    assert db.committed == [1, 2, 3] and db.transactions == 3 and handled(h) == 3


def test_a_batch_handler_gets_lists_and_a_failing_list_is_handled_again_in_halves():
    calls = []
    consumer = Consumer("batch-handler")

    @consumer.subscribe("order", batch=3)
    async def on_orders(events: list[Event]) -> None:
        calls.append([e.payload["n"] for e in events])
        if len(events) > 1 and any(e.payload["n"] == 5 for e in events):
            raise TimeoutError("the bulk call timed out")
    h = Harness(consumer)
    pipeline = h.pipelines["outbox.event.order"]
    sub = consumer.subscriptions[0]
    opener = h.runtime.batch_opener(sub)
    assert opener is not None and sub.options.batch_size == 3 and sub.options.max_in_flight == 3

    async def main():
        recs = records(h, "ABCDEF")
        for chunk in (recs[:3], recs[3:]):  # what a lane takes at once
            await settle_all(pipeline, chunk, lambda r: r, lambda r: None, opener)
        await h.advance(3600)
    asyncio.run(asyncio.wait_for(main(), 10))
    assert calls == [[1, 2, 3], [4, 5, 6], [4], [5, 6], [5], [6]]  # halves until the bad one is alone
    assert handled(h) == 6 and h.dead_letters == []


def test_batch_handler_declaration_mistakes_are_named():
    import pytest

    from relay.errors import ConfigError

    consumer = Consumer("batch-mistakes")
    for kwargs, words in [({"batch": 0}, "field 'batch' = 0"), ({"batch": 10, "inbox": "postgres"}, "needs `async def"),
                          ({"batch": 10, "batch_size": 5}, "give one of them")]:
        with pytest.raises(ConfigError, match=words):
            consumer.subscribe("order", **kwargs)(lambda events: None)


def test_a_failed_up_front_claim_loses_nothing():
    db = FakeDb()
    h, pipeline = setup(db)

    @asynccontextmanager
    async def claim_fails():
        async with db.open_batch() as batch:
            async def prepare(_ids):
                raise ConnectionError("server closed the connection")
            batch.prepare = prepare
            yield batch

    async def main():
        await settle_all(pipeline, records(h, "ABC"), lambda r: r, lambda r: None, claim_fails)
        await h.advance(3600)
    asyncio.run(asyncio.wait_for(main(), 10))
    assert sorted(db.committed) == [1, 2, 3] and handled(h) == 3


class ClaimingDb(FakeDb):
    """Claims as Postgres does: an id claimed in the open transaction (or committed) is a
    duplicate for a second copy; a rollback forgets the open transaction's claims."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.claimed: set[str] = set()

    @asynccontextmanager
    async def open_batch(self):
        async with super().open_batch() as batch:
            yield batch
        self.claimed |= batch.used  # committed

    async def invoke(self, event: Event, attempt: int) -> bool:
        batch = CURRENT.get()
        if event.id in self.claimed or (batch is not None and event.id in batch.used):
            return False
        await super().invoke(event, attempt)
        if batch is None:
            self.claimed.add(event.id)
        else:
            batch.used.add(event.id)
        return True


def test_a_copy_in_the_same_batch_is_not_recorded_before_the_commit():
    db = ClaimingDb(fail=[(3, 1)])  # the batch rolls back on 3
    h, pipeline = setup(db)
    recs = records(h, "ABC")
    copy = h._append("outbox.event.order", b"A", recs[0].value, list(recs[0].headers))  # a copy of 1
    items = [recs[0], copy, recs[1], recs[2]]
    h._cursor["outbox.event.order"] = len(h.topics["outbox.event.order"])

    async def main():
        await settle_all(pipeline, items, lambda r: r, lambda r: None, db.open_batch)
        await h.advance(3600)
    asyncio.run(asyncio.wait_for(main(), 10))
    assert sorted(db.committed) == [1, 2, 3], "1 was handled again after the rollback, not taken as seen"
