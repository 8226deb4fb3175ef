"""The coordinator's run cache on real Postgres: a cached state is used only while the run's row
is the version its coordinator wrote; a row written by anyone else, or a write that rolled back,
sends the next batch to the row."""

import asyncio
import dataclasses

import psycopg
import pytest

from relay.examples.order_saga import order_workflow
from relay.saga import store
from relay.saga.state import RunState, RunStatus

pytestmark = pytest.mark.integration


def test_a_cached_state_is_used_only_while_its_row_is_unchanged(stack, settings, unique):
    wf = order_workflow(f"cache{unique}")
    run = f"cache-run-{unique}"
    cache = store.RunCache()

    async def batch(change, *, commit=True):
        """One coordinator batch: lock the run, change its state, save it."""
        async with await psycopg.AsyncConnection.connect(settings.dsn) as conn:
            async with conn.transaction(force_rollback=not commit):
                locked = await cache.lock(conn, [run])
                state = locked.states.get(run) or RunState(run, wf.id, wf.hash, {"amount": 1})
                new = dataclasses.replace(state, reason=change, updated_at=state.updated_at + 1)
                await store.save_runs(conn, [new])
                cache.stored(locked, [new])
                return state.reason

    async def other_writer(change):
        """Someone else writes the row (another coordinator after a rebalance, say)."""
        async with await psycopg.AsyncConnection.connect(settings.dsn) as conn:
            async with conn.transaction():
                locked = await store.RunCache().lock(conn, [run])
                await store.save_runs(conn, [dataclasses.replace(locked.states[run], reason=change)])

    async def scenario():
        async with await psycopg.AsyncConnection.connect(settings.dsn) as conn:
            await store.register(conn, wf)
            await conn.commit()
        seen = [await batch("first")]                      # a new run: nothing to read
        seen.append(await batch("second"))                 # its own write: from the cache
        assert (cache.hits, cache.misses) == (1, 0)
        await other_writer("elsewhere")
        seen.append(await batch("third"))                  # written by another: read from the row
        assert (cache.hits, cache.misses) == (1, 1)
        seen.append(await batch("rolled back", commit=False))
        seen.append(await batch("fourth"))                 # the cached entry never committed: the row
        assert (cache.hits, cache.misses) == (2, 2)
        seen.append(await batch("fifth"))
        assert (cache.hits, cache.misses) == (3, 2)
        return seen

    assert asyncio.run(scenario()) == [None, "first", "elsewhere", "third", "third", "fourth"]
    with psycopg.connect(settings.dsn) as conn:
        assert conn.execute("SELECT state->>'reason', version FROM saga_runs WHERE run_id = %s",
                            (run,)).fetchone() == ("fifth", 6)


def test_an_ended_run_leaves_the_cache_and_the_cache_is_bounded():
    cache = store.RunCache(size=2)
    locked = store.Locked("7", {}, {})
    runs = [RunState(f"r{i}", "wf", "h", {}) for i in range(3)]
    cache.stored(locked, runs)
    assert list(cache.entries) == ["r1", "r2"], "oldest out first"
    cache.stored(locked, [dataclasses.replace(runs[2], status=RunStatus.COMPLETED)])
    assert list(cache.entries) == ["r1"]
