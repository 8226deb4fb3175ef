"""relay.consume.pg without I/O: the migration is pg_inbox's DDL, Tx.outbox mirrors the writer,
the inbox check's messages, a Tx after its handler, the pool's configuration."""

import inspect
import re

import pytest

from relay.consume.pg import Tx, TxOutbox, _inbox_problems, open_pool
from relay.errors import RelayError
from relay.handling import pg_inbox
from relay.outbox.schema import migrations
from relay.outbox.writer import awrite, awrite_many


def _statements(sql):
    text = re.sub(r"--[^\n]*", "", sql)
    return [" ".join(s.split()) for s in text.split(";") if s.strip()]


def test_migration_0007_is_the_inbox_ddl_under_the_inbox_schema_lock():
    found = {m.version: m for m in migrations()}
    assert found[7].name == "processed_events"
    lock, *ddl = _statements(found[7].sql)
    assert ddl == _statements(pg_inbox.DDL)
    assert lock == f"SELECT pg_advisory_xact_lock({pg_inbox.SCHEMA_LOCK_ID})"


@pytest.mark.parametrize("method, writer", [(TxOutbox.write, awrite), (TxOutbox.write_many, awrite_many)])
def test_tx_outbox_takes_the_writers_arguments_minus_the_connection(method, writer):
    ours = inspect.signature(method).parameters
    theirs = inspect.signature(writer).parameters
    assert list(ours)[1:] == list(theirs)[1:]
    for name in list(theirs)[1:]:
        assert (ours[name].kind, ours[name].default) == (theirs[name].kind, theirs[name].default), name


def test_inbox_check_messages():
    missing = _inbox_problems((False, False, "relay", "app", '"$user", public'))
    assert len(missing) == 1
    assert "processed_events" in missing[0] and "'relay'" in missing[0] and "run `relay outbox migrate`" in missing[0]
    denied = _inbox_problems((True, False, "relay", "app", "public"))
    assert denied == ["role 'app' may not INSERT into processed_events in database 'relay': "
                      "GRANT INSERT ON processed_events TO app"]
    assert _inbox_problems((True, True, "relay", "app", "public")) == []


def test_tx_after_its_handler_refuses_every_use():
    tx = Tx(object(), consumer="billing", event_id="e-1", attempt=2, state={"k": 1})
    assert (tx.consumer, tx.attempt, tx.state, tx.event_id) == ("billing", 2, {"k": 1}, "e-1")
    tx._end()
    with pytest.raises(RelayError, match="'billing' for event e-1 was used after its handler returned"):
        tx.conn  # noqa: B018


def test_open_pool_is_not_opened_and_hands_out_autocommit_connections():
    pool = open_pool("postgresql://relay@127.0.0.1:1/relay", 6)
    assert pool.closed, "the caller opens it"
    assert (pool.min_size, pool.max_size, pool.name) == (1, 6, "relay-inbox")
    assert pool.kwargs["autocommit"] is True
