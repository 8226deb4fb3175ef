"""Writer features against real Postgres: idempotency keys (also under concurrency), batches,
the async writer, delete-after-insert (still published by the CDC relay)."""

import asyncio
import threading

import psycopg
import pytest

from relay.errors import IdempotencyConflict, InvalidEvent
from relay.outbox import OutboxEvent, awrite, awrite_many, write, write_many
from tests.support.kafka import event_id, read_until

pytestmark = pytest.mark.integration


def rows(conn, aggregatetype):
    return conn.execute("SELECT count(*) FROM outbox WHERE aggregatetype = %s", (aggregatetype,)).fetchone()[0]


def test_same_key_same_request_returns_first_event(db, unique):
    args = dict(aggregatetype=f"i{unique}", aggregateid="a", type="Charge", payload={"cents": 100},
                idempotency_key="req-1")
    with db.transaction():
        first = write(db, **args)
    with db.transaction():
        again = write(db, **args)
    assert again == first and rows(db, f"i{unique}") == 1


def test_same_key_different_request_is_a_conflict_naming_the_key(db, unique):
    with db.transaction():
        write(db, aggregatetype=f"i{unique}", aggregateid="a", type="Charge", payload={"cents": 100},
              idempotency_key="req-2")
    with pytest.raises(IdempotencyConflict, match="'req-2'") as info:
        with db.transaction():
            write(db, aggregatetype=f"i{unique}", aggregateid="a", type="Charge", payload={"cents": 999},
                  idempotency_key="req-2")
    assert info.value.key == "req-2" and not info.value.retriable
    assert rows(db, f"i{unique}") == 1


def test_concurrent_writers_with_one_key_make_exactly_one_row(stack, settings, unique):
    barrier = threading.Barrier(8)
    results, errors = [], []

    def attempt():
        try:
            with psycopg.connect(settings.dsn) as conn:
                barrier.wait()
                with conn.transaction():
                    results.append(write(conn, aggregatetype=f"i{unique}", aggregateid="a", type="Charge",
                                         payload={"cents": 5}, idempotency_key="shared"))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    with psycopg.connect(settings.dsn) as conn:
        assert rows(conn, f"i{unique}") == 1


def test_batch_is_all_or_nothing_when_one_event_is_bad(db, unique):
    good = OutboxEvent(f"b{unique}", "a", "T", {"n": 1})
    bad = OutboxEvent(f"b{unique}", "", "T", {"n": 2})
    with db.transaction():
        with pytest.raises(InvalidEvent, match="aggregateid"):
            write_many(db, [good, bad])
    assert rows(db, f"b{unique}") == 0
    with db.transaction():
        results = write_many(db, [good, OutboxEvent(f"b{unique}", "a", "T", {"n": 2})])
    assert len({r.id for r in results}) == 2 and rows(db, f"b{unique}") == 2


def test_async_writer(stack, settings, unique):
    async def main():
        async with await psycopg.AsyncConnection.connect(settings.dsn) as conn:
            async with conn.transaction():
                one = await awrite(conn, aggregatetype=f"as{unique}", aggregateid="a", type="T", payload=[1])
                more = await awrite_many(conn, [OutboxEvent(f"as{unique}", "a", "T", {"k": "ü"}, idempotency_key="k"),
                                                OutboxEvent(f"as{unique}", "a", "T", {"k": "ü"}, idempotency_key="k")])
        return one, more

    one, more = asyncio.run(main())
    assert more[1].duplicate and more[1].id == more[0].id != one
    with psycopg.connect(settings.dsn) as conn:
        assert rows(conn, f"as{unique}") == 2


def test_delete_after_insert_keeps_the_table_empty_and_still_publishes(db, settings, unique):
    with db.transaction():
        eid = write(db, aggregatetype=f"d{unique}", aggregateid="a", type="T", payload={"gone": True},
                    delete_after=True)
    assert rows(db, f"d{unique}") == 0
    records = read_until(settings.bootstrap_servers, f"outbox.event.d{unique}",
                         lambda recs: any(event_id(m) == str(eid) for m in recs))
    assert [event_id(m) for m in records] == [str(eid)], "published once; the delete produced nothing"


def test_delete_after_with_idempotency_key_is_rejected(db, unique):
    with pytest.raises(InvalidEvent, match="idempotency_key"):
        write(db, aggregatetype=f"d{unique}", aggregateid="a", type="T", payload={}, idempotency_key="k",
              delete_after=True)
