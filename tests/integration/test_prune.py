"""`relay outbox prune`: only old rows known to be in Kafka are deleted; Kafka sees no deletes."""

from datetime import datetime, timedelta, timezone

import pytest

from relay.errors import InvalidEvent
from relay.outbox import write
from relay.outbox.prune import parse_duration, prune

pytestmark = pytest.mark.integration


def test_prune_deletes_only_published_old_rows(db, unique):
    with db.transaction():
        marked = write(db, aggregatetype=f"r{unique}", aggregateid="a", type="T", payload={})
        unmarked = write(db, aggregatetype=f"r{unique}", aggregateid="a", type="T", payload={})
        db.execute("UPDATE outbox SET published_at = now(), created_at = now() - interval '2 days' WHERE id = %s",
                   (marked,))
        db.execute("UPDATE outbox SET created_at = now() - interval '2 days' WHERE id = %s", (unmarked,))
    assert prune(db, older_than=timedelta(days=1), cdc_published_before=None) >= 1
    left = {r[0] for r in db.execute("SELECT id FROM outbox WHERE aggregatetype = %s", (f"r{unique}",))}
    assert left == {unmarked}
    # with a CDC position after it, the unmarked row is known published too
    prune(db, older_than=timedelta(days=1), cdc_published_before=datetime.now(timezone.utc))
    assert not db.execute("SELECT 1 FROM outbox WHERE aggregatetype = %s", (f"r{unique}",)).fetchone()


def test_duration_parsing():
    assert parse_duration("7d") == timedelta(days=7) and parse_duration("90s") == timedelta(seconds=90)
    with pytest.raises(InvalidEvent, match="older_than"):
        parse_duration("a week")
