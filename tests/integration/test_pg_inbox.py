"""Postgres inbox against real Postgres: claims commit and roll back with the effect, concurrent
first deliveries make one effect, pruning (the consumer's use: test_pg_tx.py)."""

import threading
import time
import uuid
from datetime import timedelta

import psycopg
import pytest

from relay.errors import RelayError
from relay.handling.pg_inbox import claim, ensure_schema, prune

pytestmark = pytest.mark.integration


@pytest.fixture
def conn(stack, settings):
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        ensure_schema(conn)
        yield conn


@pytest.fixture
def effects(conn, unique):
    """A real effect table (no unique constraint: a second effect would show up as a second row)."""
    table = f"pg_inbox_fx_{unique}"
    conn.execute(f"CREATE TABLE {table} (event_id uuid NOT NULL, note text)")
    yield table
    conn.execute(f"DROP TABLE {table}")


def count(conn, table, eid):
    return conn.execute(f"SELECT count(*) FROM {table} WHERE event_id = %s", (eid,)).fetchone()[0]


def claimed(conn, consumer, eid):
    return conn.execute("SELECT count(*) FROM processed_events WHERE consumer = %s AND event_id = %s",
                        (consumer, eid)).fetchone()[0]


def test_claim_once_per_consumer_and_event(conn, unique):
    eid = uuid.uuid4()
    with conn.transaction():
        assert claim(conn, f"a{unique}", eid) is True
    with conn.transaction():
        assert claim(conn, f"a{unique}", str(eid)) is False
        assert claim(conn, f"b{unique}", eid) is True, "another consumer is independent"
    with conn.transaction():
        assert claim(conn, f"b{unique}", eid) is False


def test_claim_refuses_an_idle_autocommit_connection(conn, unique):
    with pytest.raises(RelayError, match="inside the caller's open transaction"):
        claim(conn, f"a{unique}", uuid.uuid4())


def test_rollback_releases_the_claim(conn, effects, unique):
    eid = uuid.uuid4()
    with pytest.raises(ZeroDivisionError):
        with conn.transaction():
            assert claim(conn, f"c{unique}", eid)
            conn.execute(f"INSERT INTO {effects} VALUES (%s, 'first try')", (eid,))
            raise ZeroDivisionError("the handler fails after its claim")
    assert count(conn, effects, eid) == 0 and claimed(conn, f"c{unique}", eid) == 0
    with conn.transaction():
        assert claim(conn, f"c{unique}", eid), "the next delivery claims again"
        conn.execute(f"INSERT INTO {effects} VALUES (%s, 'second try')", (eid,))
    assert count(conn, effects, eid) == 1 and claimed(conn, f"c{unique}", eid) == 1


def test_concurrent_first_deliveries_make_one_effect(settings, effects, unique):
    eid, n = uuid.uuid4(), 6
    barrier = threading.Barrier(n)
    results, errors = [], []

    def deliver():
        try:
            with psycopg.connect(settings.dsn, autocommit=True) as c:
                barrier.wait()
                with c.transaction():
                    first = claim(c, f"d{unique}", eid)
                    if first:
                        c.execute(f"INSERT INTO {effects} VALUES (%s, 'effect')", (eid,))
                        time.sleep(0.3)  # keep the claim uncommitted while the others arrive
                results.append(first)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sorted(results) == [False] * (n - 1) + [True]
    with psycopg.connect(settings.dsn) as c:
        assert count(c, effects, eid) == 1


@pytest.mark.parametrize("first_commits", [True, False])
def test_second_claim_waits_for_the_first_transaction(settings, conn, unique, first_commits):
    eid, outcome = uuid.uuid4(), []
    with psycopg.connect(settings.dsn) as first:  # not autocommit: the claim opens its transaction
        assert claim(first, f"w{unique}", eid)

        def second():
            with psycopg.connect(settings.dsn, autocommit=True) as c, c.transaction():
                outcome.append(claim(c, f"w{unique}", eid))

        t = threading.Thread(target=second)
        t.start()
        t.join(0.5)
        assert t.is_alive() and not outcome, "the second claim blocks on the uncommitted row"
        first.commit() if first_commits else first.rollback()
        t.join(10)
    assert outcome == [not first_commits], "False after the first commits, True after it rolls back"


def test_prune_deletes_only_old_rows(conn, unique):
    old, new = uuid.uuid4(), uuid.uuid4()
    with conn.transaction():
        assert claim(conn, f"p{unique}", old) and claim(conn, f"p{unique}", new)
        conn.execute("UPDATE processed_events SET processed_at = now() - interval '8 days'"
                     " WHERE consumer = %s AND event_id = %s", (f"p{unique}", old))
    assert prune(conn, timedelta(days=7)) >= 1
    left = {r[0] for r in conn.execute("SELECT event_id FROM processed_events WHERE consumer = %s",
                                       (f"p{unique}",))}
    assert left == {new}


def test_ensure_schema_is_safe_concurrently(settings, conn, unique):
    schema = f"relay_inbox_{unique}"  # a fresh schema, so the creation itself races
    conn.execute(f"CREATE SCHEMA {schema}")
    barrier, errors = threading.Barrier(6), []

    def run():
        try:
            with psycopg.connect(settings.dsn, options=f"-c search_path={schema}") as c:
                barrier.wait()
                ensure_schema(c)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    try:
        threads = [threading.Thread(target=run) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.processed_events",)).fetchone()[0]
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
