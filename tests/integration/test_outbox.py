"""The outbox writer against real Postgres: caller's transaction, nothing written on bad input."""

import pytest

from relay.errors import InvalidEvent
from relay.outbox import migrate, write

pytestmark = pytest.mark.integration


def count(conn, aggregateid):
    return conn.execute("SELECT count(*) FROM outbox WHERE aggregateid = %s", (aggregateid,)).fetchone()[0]


def test_migrate_is_idempotent(db, settings):
    assert migrate(db, max_event_bytes=settings.max_event_bytes) == []


def test_write_commits_and_rolls_back_with_the_caller(db, unique):
    with db.transaction():
        eid = write(db, aggregatetype="order", aggregateid=f"a-{unique}", type="T", payload={"n": 1})
    row = db.execute("SELECT aggregatetype, type, payload, published_at FROM outbox WHERE id = %s", (eid,)).fetchone()
    assert row == ("order", "T", {"n": 1}, None)

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with db.transaction():
            write(db, aggregatetype="order", aggregateid=f"b-{unique}", type="T", payload={})
            raise Boom
    assert count(db, f"b-{unique}") == 0


@pytest.mark.parametrize("change, field", [
    ({"aggregateid": ""}, "aggregateid"), ({"aggregateid": None}, "aggregateid"),
    ({"aggregatetype": ""}, "aggregatetype"), ({"aggregatetype": None}, "aggregatetype"),
    ({"payload": {"when": object()}}, "payload"),
])
def test_bad_input_names_the_field_and_writes_nothing(db, unique, change, field):
    args = dict(aggregatetype="order", aggregateid=f"c-{unique}", type="T", payload={"ok": True})
    args.update(change)
    before = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
    with db.transaction():
        with pytest.raises(InvalidEvent) as info:
            write(db, **args)
        # still inside the caller's transaction: it is usable and holds no new row
        assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == before
    assert info.value.field == field and field in str(info.value)
    assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == before
