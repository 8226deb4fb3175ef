"""Which outbox row holds the pipeline, and why: the decision, without I/O.

When the connector's task fails on one record, every later row waits behind it. The facts are
the task's trace, Connect's stored source offset (everything up to it is in Kafka), the inserts
the replication slot still holds after it (relay.outbox.wal) and the topics' size limits. The
root cause names the kind of failure, and the kind says which row it must be:

- ``too_large`` (RecordTooLargeException, from our producer or the broker): the first pending row
  bigger than its topic (or the producer) accepts;
- ``topic`` (a topic that cannot be created, e.g. colliding with an existing one, or is not
  authorized): the first pending row of that topic's aggregate type;
- ``other``: the first pending row; exact only once every earlier record was committed on its
  own (``relay outbox unblock`` pins it with a one-record batch before skipping anything).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Iterable, Mapping

from relay.headers import EVENT_TOPIC_PREFIX, event_topic
from relay.outbox.wal import WalInsert, lsn_text


class CauseKind(StrEnum):
    TOO_LARGE = "too_large"
    TOPIC = "topic"
    OTHER = "other"


@dataclass(frozen=True)
class Cause:
    kind: CauseKind
    text: str  # the root cause line
    topic: str | None = None  # the topic it names, when it names one
    limit: int | None = None  # the producer limit it names (bytes), when it names one


_TOPIC_PATTERNS = (
    re.compile(r"Unable to create topic\(s\) '([^']+)'"),
    re.compile(r"Topic '([^']+)' collides with existing topic"),
    re.compile(r"Not authorized to access topics: \[([^\]]+)\]"),
    re.compile(r"InvalidTopicException: .*?([\w.-]*" + re.escape(EVENT_TOPIC_PREFIX) + r"[\w.-]+)"),
)


def classify(trace: str, root: str) -> Cause:
    """The kind of per-record failure a task's trace describes (``root``: its root cause line)."""
    if "RecordTooLargeException" in trace:
        named = re.search(r"larger than (\d+), which is the value of the max\.request\.size", trace)
        return Cause(CauseKind.TOO_LARGE, root, limit=int(named[1]) if named else None)
    for pattern in _TOPIC_PATTERNS:
        match = pattern.search(trace)
        if match:
            return Cause(CauseKind.TOPIC, root, topic=match[1].split(",")[0].strip())
    return Cause(CauseKind.OTHER, root)


# what a record carries besides the counted event: ids, type and aggregatetype headers, framing
_FRAMING = 512


def suspect(pending: Iterable[WalInsert], cause: Cause, topic_limits: Mapping[str, int]) -> WalInsert | None:
    """The pending row (in stream order) the failure is about, or None when none fits the cause."""
    for row in pending:
        topic = event_topic(row.aggregatetype or "")
        if cause.kind == CauseKind.TOO_LARGE:
            limits = [v for v in (topic_limits.get(topic), cause.limit) if v]
            if limits and row.size + _FRAMING > min(limits):
                return row
        elif cause.kind == CauseKind.TOPIC:
            if topic == cause.topic:
                return row
        else:
            return row
    return None


def _int(offset: Mapping[str, object], key: str) -> int:
    value = offset.get(key)
    return int(value) if isinstance(value, (int, str)) else 0


def after_offset(inserts: list[WalInsert], offset: Mapping[str, object] | None,
                 confirmed_flush: int = 0) -> list[WalInsert]:
    """The inserts Debezium 3.5 streams after its stored source ``offset`` (None: all), in stream
    order. The stream holds the transactions committing at or after max(lsn_proc, lsn_commit,
    confirmed flush); a stored change (INSERT...) is found by (txId, lsn) and only what follows it
    is pending; after a COMMIT or BEGIN offset (heartbeats) all of the stream is."""
    if not offset:
        return list(inserts)
    start = max(_int(offset, "lsn_proc"), _int(offset, "lsn_commit"), confirmed_flush)
    live = [w for w in inserts if w.commit_lsn >= start]
    if offset.get("messageType") in ("INSERT", "UPDATE", "DELETE"):
        xid, lsn = _int(offset, "txId"), _int(offset, "lsn_proc")
        for i, w in enumerate(live):
            if w.xid == xid and w.lsn == lsn:
                return live[i + 1:]
        raise LookupError(f"the stored offset's change (txId {xid}, LSN {lsn_text(lsn)}) is not in the slot")
    return live


def skip_offset(row: WalInsert, stored: Mapping[str, object]) -> dict[str, object]:
    """The source offset of ``row`` itself, as Debezium 3.5 would have stored it after sending it:
    PATCHed into a stopped connector, streaming resumes right after ``row`` and nothing else is
    skipped, provided ``row`` is the first pending record (see relay.outbox.unblock)."""
    if row.shares_lsn:
        raise ValueError(f"event {row.event_id} shares its WAL position with other rows (a multi-row insert): "
                         "it cannot be skipped alone")
    commit = max(row.prev_commit_end or 0, _int(stored, "lsn_commit"))
    return {"lsn_proc": row.lsn, "messageType": "INSERT", "lsn_commit": commit, "lsn": row.lsn,
            "txId": row.xid, "ts_usec": row.commit_ts_unix_us}
