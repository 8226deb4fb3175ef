"""relay.consume.pg against real Postgres: a postgres-inbox handler's effect, claim and outbox
writes commit together or not at all; duplicates skip the handler; distinct events run in
parallel over the pool; migration 0007 and the missing-table check."""

import asyncio
import time
import uuid

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from relay.consume.pg import acheck_inbox_table, check_inbox_table, open_pool, postgres_invoker
from relay.errors import ConfigError, DatabaseError, Reject, RelayError, Retry
from relay.handling.event import Event
from relay.handling.pg_inbox import ensure_schema
from relay.outbox.schema import applied_versions, migrate, migrations

pytestmark = pytest.mark.integration

AGGREGATE = "pgtx"  # one aggregate type (one topic) for every run; the aggregate id is unique


@pytest.fixture
def conn(stack, settings):
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        migrate(conn, max_event_bytes=settings.max_event_bytes)
        yield conn


@pytest.fixture
def effects(conn, unique):
    table = f"pg_tx_fx_{unique}"  # no unique constraint: a second effect shows up as a second row
    conn.execute(f"CREATE TABLE {table} (event_id uuid NOT NULL, note text)")
    yield table
    conn.execute(f"DROP TABLE {table}")


@pytest.fixture
def throwaway_schema(conn, unique):
    schema = f"relay_pg_tx_{unique}"
    conn.execute(f"CREATE SCHEMA {schema}")
    yield schema
    conn.execute(f"DROP SCHEMA {schema} CASCADE")


def event(eid=None):
    return Event(id=str(eid or uuid.uuid4()), type="Tested", key="k", payload={}, topic="t", partition=0, offset=0)


def one(conn, sql, *params):
    return conn.execute(sql, params).fetchone()[0]


def claimed(conn, consumer, eid):
    return one(conn, "SELECT count(*) FROM processed_events WHERE consumer = %s AND event_id = %s", consumer, eid)


def effect_rows(conn, table, eid):
    return one(conn, f"SELECT count(*) FROM {table} WHERE event_id = %s", eid)


def outbox_rows(conn, aggregateid):
    return one(conn, "SELECT count(*) FROM outbox WHERE aggregatetype = %s AND aggregateid = %s", AGGREGATE,
               aggregateid)


def run(settings, size, body, **pool_args):
    """``body(pool)`` inside one event loop, with an opened pool of ``size`` closed afterwards."""
    async def main():
        pool = open_pool(pool_args.pop("dsn", settings.dsn), size, **pool_args)
        await pool.open(wait=True, timeout=10)
        try:
            return await body(pool)
        finally:
            await pool.close()
    return asyncio.run(main())


async def one_batch(pool, consumer, handler, events, *, batch_handler=False, skip=None):
    """``events`` handled as one batch (one transaction, ids claimed up front), as the pipeline
    does; each invoke's result. ``skip``: an event claimed but never handled."""
    from relay.consume.batch import CURRENT
    from relay.consume.pg import batch_handler_end, batch_opener

    invoke = postgres_invoker(pool, consumer, handler, {}, batch_handler=batch_handler)
    opener = batch_opener(pool, consumer, batch_handler_end(consumer, handler, {}) if batch_handler else None)
    async with opener() as batch:
        await batch.prepare([e.id for e in events])
        token = CURRENT.set(batch)
        try:
            return [await invoke(e, 1) for e in events if skip is None or e.id != skip.id]
        finally:
            CURRENT.reset(token)


def test_migration_0007_is_applied_and_matches_ensure_schema(conn, throwaway_schema):
    assert 7 in applied_versions(conn)
    sql = next(m.sql for m in migrations() if m.version == 7)
    conn.execute(f"SET search_path = {throwaway_schema}")
    try:
        with conn.transaction():
            conn.execute(sql)  # a fresh schema
        conn.execute("DROP TABLE processed_events")
        ensure_schema(conn)  # made by the inbox first: the migration still applies cleanly
        with conn.transaction():
            conn.execute(sql)
        shape = """SELECT array_agg(column_name || ' ' || data_type || ' ' || is_nullable ORDER BY ordinal_position)
                   FROM information_schema.columns WHERE table_schema = %s AND table_name = 'processed_events'"""
        indexes = "SELECT array_agg(indexname ORDER BY indexname) FROM pg_indexes WHERE schemaname = %s"
        assert one(conn, shape, throwaway_schema) == one(conn, shape, "public")
        assert one(conn, indexes, throwaway_schema) == ["processed_events_pkey", "processed_events_processed_at"]
    finally:
        conn.execute("RESET search_path")


def test_first_delivery_commits_effect_and_claim_then_duplicates_skip(settings, conn, effects, unique):
    ev, calls, consumer = event(), [], f"a{unique}"

    async def handler(e, tx):
        calls.append((e.id, tx.attempt, tx.consumer, tx.state["shared"]))
        await tx.execute(f"INSERT INTO {effects} VALUES (%s, 'done')", (e.id,))

    async def body(pool):
        invoke = postgres_invoker(pool, consumer, handler, {"shared": 42})
        return [await invoke(ev, 1), await invoke(ev, 2)]

    assert run(settings, 2, body) == [True, False]
    assert calls == [(ev.id, 1, consumer, 42)], "the duplicate did not call the handler"
    assert effect_rows(conn, effects, ev.id) == 1 and claimed(conn, consumer, ev.id) == 1


def test_a_raising_handler_rolls_back_effect_and_claim(settings, conn, effects, unique):
    ev, consumer, raised = event(), f"r{unique}", [Retry("later", delay=1), Reject("never"), ValueError("no")]

    async def handler(e, tx):
        await tx.execute(f"INSERT INTO {effects} VALUES (%s, 'maybe')", (e.id,))
        if raised:
            raise raised[0]

    async def body(pool):
        invoke = postgres_invoker(pool, consumer, handler, {})
        while raised:
            with pytest.raises(type(raised[0])) as info:
                await invoke(ev, 1)
            assert info.value is raised.pop(0), "propagated unchanged"
            assert effect_rows(conn, effects, ev.id) == 0 and claimed(conn, consumer, ev.id) == 0
        return await invoke(ev, 2)

    assert run(settings, 1, body) is True, "a later delivery handles it"
    assert effect_rows(conn, effects, ev.id) == 1 and claimed(conn, consumer, ev.id) == 1


def test_outbox_write_commits_with_the_claim_or_not_at_all(settings, conn, unique):
    consumer, good, bad = f"o{unique}", event(), event()

    async def handler(e, tx):
        await tx.outbox.write(aggregatetype=AGGREGATE, aggregateid=f"{unique}-{e.id}", type="Followed",
                              payload={"of": e.id})
        if e is bad:
            raise RuntimeError("fails after its outbox write")

    async def body(pool):
        invoke = postgres_invoker(pool, consumer, handler, {})
        assert await invoke(good, 1) is True
        with pytest.raises(RuntimeError):
            await invoke(bad, 1)
        assert await invoke(good, 2) is False

    run(settings, 2, body)
    assert outbox_rows(conn, f"{unique}-{good.id}") == 1 and claimed(conn, consumer, good.id) == 1
    assert outbox_rows(conn, f"{unique}-{bad.id}") == 0 and claimed(conn, consumer, bad.id) == 0


def test_sql_errors_are_database_errors_and_a_swallowed_one_commits_nothing(settings, conn, effects, unique):
    consumer, ev = f"s{unique}", event()

    async def bad_sql(e, tx):
        await tx.execute("SELECT no_such_column FROM processed_events")

    async def swallows(e, tx):
        await tx.execute(f"INSERT INTO {effects} VALUES (%s, 'lost')", (e.id,))
        try:
            await tx.execute("SELECT 1/0")
        except DatabaseError:
            pass  # Postgres aborted the transaction anyway

    async def body(pool):
        with pytest.raises(DatabaseError, match="UndefinedColumn") as info:
            await postgres_invoker(pool, consumer, bad_sql, {})(ev, 1)
        assert not info.value.retriable
        with pytest.raises(DatabaseError, match="returned after a failed statement.*DivisionByZero"):
            await postgres_invoker(pool, consumer, swallows, {})(ev, 1)

    run(settings, 1, body)
    assert effect_rows(conn, effects, ev.id) == 0 and claimed(conn, consumer, ev.id) == 0


def test_tx_is_unusable_after_its_handler(settings, unique):
    kept = []

    async def handler(e, tx):
        kept.append(tx)

    async def body(pool):
        await postgres_invoker(pool, f"u{unique}", handler, {})(event(), 1)
        with pytest.raises(RelayError, match="used after its handler returned"):
            await kept[0].execute("SELECT 1")

    run(settings, 1, body)


def test_distinct_events_run_in_parallel_over_the_pool(settings, conn, effects, unique):
    consumer, events = f"p{unique}", [event() for _ in range(8)]
    in_flight, peak = [0], [0]

    async def handler(e, tx):
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        try:
            await tx.execute("SELECT pg_sleep(0.25)")
            await tx.execute(f"INSERT INTO {effects} VALUES (%s, 'parallel')", (e.id,))
        finally:
            in_flight[0] -= 1

    async def body(pool):
        invoke = postgres_invoker(pool, consumer, handler, {})
        started = time.perf_counter()
        results = await asyncio.gather(*(invoke(e, 1) for e in events))
        return results, time.perf_counter() - started

    results, elapsed = run(settings, 4, body)
    assert results == [True] * 8
    assert 2 <= peak[0] <= 4, f"{peak[0]} handlers in flight at once over a pool of 4"
    assert elapsed < 8 * 0.25 * 0.75, f"8 x 0.25 s took {elapsed:.2f} s: not parallel"
    for e in events:
        assert effect_rows(conn, effects, e.id) == 1 and claimed(conn, consumer, e.id) == 1


def test_no_connection_in_time_is_a_retriable_database_error(settings, unique):
    release = None

    async def holder(e, tx):
        await release.wait()

    async def body(pool):
        nonlocal release
        release = asyncio.Event()
        invoke = postgres_invoker(pool, f"t{unique}", holder, {})
        first = asyncio.create_task(invoke(event(), 1))
        await asyncio.sleep(0.1)  # the first call holds the only connection
        with pytest.raises(DatabaseError, match="no connection from pool 'relay-inbox' within 0.3s") as info:
            await invoke(event(), 1)
        release.set()
        assert await first is True
        return info.value.retriable

    assert run(settings, 1, body, timeout_s=0.3) is True


def test_missing_table_is_a_config_error_naming_the_fix(settings, throwaway_schema):
    dsn = make_conninfo(settings.dsn, options=f"-c search_path={throwaway_schema}")
    with psycopg.connect(dsn, autocommit=True) as c:
        with pytest.raises(ConfigError, match=r"processed_events.*missing.*run `relay outbox migrate`"):
            check_inbox_table(c)

    async def body(pool):
        with pytest.raises(ConfigError, match=r"processed_events.*missing.*run `relay outbox migrate`"):
            await acheck_inbox_table(pool)

    run(settings, 1, body, dsn=dsn)
    with psycopg.connect(settings.dsn, autocommit=True) as c:
        check_inbox_table(c)  # the migrated database passes


def test_a_batch_claims_up_front_execute_waits_send_is_pipelined_and_unused_claims_go(settings, conn, effects,
                                                                                      unique):

    consumer = f"b{unique}"
    handled, skipped, bad = event(), event(), event()
    counts = []

    async def handler(e, tx):
        cur = await tx.execute(f"UPDATE {effects} SET note = 'x' WHERE event_id = %s", (e.id,))
        counts.append(cur.rowcount)  # execute waited for its own result, pipeline or not
        await tx.send(f"INSERT INTO {effects} VALUES (%s, 'sent')", (e.id,))
        if e.id == bad.id:
            await tx.send("INSERT INTO no_such_table_anywhere VALUES (1)")  # shows only at COMMIT

    async def body(pool):
        fresh = await one_batch(pool, consumer, handler, [handled, skipped], skip=skipped)
        with pytest.raises(psycopg.Error):  # the sent statement's error, at COMMIT: nothing of the batch stays
            await one_batch(pool, consumer, handler, [bad])
        return fresh

    assert run(settings, 2, body) == [True]
    assert counts == [0, 0], "rowcount of execute's own UPDATE, also in pipeline mode"
    assert effect_rows(conn, effects, handled.id) == 1 and claimed(conn, consumer, handled.id) == 1
    assert claimed(conn, consumer, skipped.id) == 0, "a claim of an event the batch did not handle is deleted"
    assert effect_rows(conn, effects, bad.id) == 0 and claimed(conn, consumer, bad.id) == 0


def test_a_batch_handler_commits_claims_and_effects_once_and_a_failure_commits_nothing(settings, conn, effects,
                                                                                       unique):

    consumer = f"bh{unique}"
    events, calls = [event() for _ in range(3)], []
    bad = event()

    async def handler(batch_events, tx):
        calls.append([e.id for e in batch_events])
        async with tx.conn.cursor() as cur:  # the fast path a batch handler is for: one executemany
            await cur.executemany(f"INSERT INTO {effects} VALUES (%s, 'batch')", [(e.id,) for e in batch_events])
        if tx.attempt == 1 and any(e.id == bad.id for e in batch_events):
            raise ValueError("a bad event in the list")

    async def body(pool):
        first = await one_batch(pool, consumer, handler, events, batch_handler=True)
        again = await one_batch(pool, consumer, handler, [events[0], events[0]], batch_handler=True)  # a copy
        with pytest.raises(ValueError):
            await one_batch(pool, consumer, handler, [events[1], bad], batch_handler=True)
        alone = await postgres_invoker(pool, consumer, handler, {}, batch_handler=True)(bad, 2)  # its retry
        return first, again, alone

    assert run(settings, 2, body) == ([True, True, True], [False, False], True)
    assert calls == [[e.id for e in events], [bad.id], [bad.id]]  # handled ones and copies left out
    for e in events:
        assert effect_rows(conn, effects, e.id) == 1 and claimed(conn, consumer, e.id) == 1
    assert effect_rows(conn, effects, bad.id) == 1 and claimed(conn, consumer, bad.id) == 1  # only the retry's


def test_write_later_goes_out_once_per_batch_before_commit_after_the_immediate_writes(settings, conn, unique):
    """TxOutbox.write_later: in a batch, the queued rows are one INSERT before COMMIT, after the
    batch's immediate writes, in call order; they vanish with a rolled-back batch; outside a
    batch they are written at once; an idempotency key is refused before any SQL."""
    from relay.errors import InvalidEvent
    from relay.outbox.writer import OutboxEvent

    consumer, key = f"wl{unique}", f"wl-{unique}"
    events, doomed, alone = [event() for _ in range(3)], event(), event()

    async def handler(e, tx):
        await tx.outbox.write_later([OutboxEvent(AGGREGATE, key, "Later", {"n": e.id})], schemas=None)
        await tx.outbox.write(aggregatetype=AGGREGATE, aggregateid=key, type="Now", payload={"n": e.id}, schemas=None)
        if e.id == doomed.id:
            raise ValueError("rolled back with its batch")

    async def body(pool):
        done = await one_batch(pool, consumer, handler, events)
        with pytest.raises(ValueError):
            await one_batch(pool, consumer, handler, [doomed])
        single = await postgres_invoker(pool, consumer, handler, {})(alone, 1)

        async def keyed(e, tx):
            await tx.outbox.write_later([OutboxEvent(AGGREGATE, key, "Later", {}, idempotency_key="k")])
        with pytest.raises(InvalidEvent, match="idempotency_key"):
            await postgres_invoker(pool, consumer, keyed, {})(event(), 1)
        return done, single

    assert run(settings, 2, body) == ([True, True, True], True)
    rows = conn.execute("SELECT type, payload->>'n' FROM outbox WHERE aggregatetype = %s AND aggregateid = %s "
                        "ORDER BY seq", (AGGREGATE, key)).fetchall()
    ids = [e.id for e in events]
    assert rows == [("Now", i) for i in ids] + [("Later", i) for i in ids] + [("Later", alone.id), ("Now", alone.id)]
