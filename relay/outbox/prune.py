"""Keep the outbox table small: delete rows that are old *and* known to be in Kafka.

A row is known to be published when the polling relay marked it (``published_at``) or, for the
CDC relay, when it was created before the connector's stored position (minus a margin for long
transactions). Unpublished and terminal rows are never deleted. Deletes never reach Kafka: the
publication carries inserts only. Deleting a row also forgets its idempotency key.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import psycopg

from relay.errors import InvalidEvent
from relay.outbox.schema import OUTBOX_TABLES

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

PRUNE = """
DELETE FROM {table} WHERE id IN (
    SELECT id FROM {table}
    WHERE created_at < now() - %(age)s
      AND (published_at IS NOT NULL OR created_at < %(cdc_before)s)
    LIMIT %(batch)s)
"""


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip())
    if not match:
        raise InvalidEvent("older_than", text, "a duration like 90s, 30m, 12h or 7d")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def prune(conn: psycopg.Connection, *, older_than: timedelta, cdc_published_before: datetime | None,
          batch: int = 5000) -> int:
    """Delete in batches (one transaction each, so locks stay short); returns rows deleted."""
    floor = cdc_published_before or datetime.fromtimestamp(0).astimezone()
    total = 0
    for table in OUTBOX_TABLES:
        while True:
            with conn.transaction():
                deleted = conn.execute(PRUNE.format(table=table),
                                       {"age": older_than, "cdc_before": floor, "batch": batch}).rowcount
            total += deleted
            if deleted < batch:
                break
    return total
