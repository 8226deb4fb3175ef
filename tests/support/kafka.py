"""An independent Kafka reader for tests: plain confluent-kafka, no code of ours on the read path."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from relay.verify import Delivered


def wait_for_topic(bootstrap: str, topic: str, timeout_s: float = 60) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        meta = admin.list_topics(topic, timeout=5).topics.get(topic)
        if meta is not None and meta.error is None and meta.partitions:
            return len(meta.partitions)
        time.sleep(0.2)
    raise AssertionError(f"topic {topic} did not appear within {timeout_s} s")


def read_until(bootstrap: str, topic: str, done, timeout_s: float = 60) -> list:
    """Read ``topic`` from the beginning until ``done(records)`` or the timeout."""
    partitions = wait_for_topic(bootstrap, topic)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{time.time_ns()}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])  # 0 = beginning
    records = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not done(records):
            msgs = consumer.consume(500, 0.2)
            records.extend(m for m in msgs if not m.error())
    finally:
        consumer.close()
    return records


def event_id(msg) -> str:
    return dict(msg.headers() or []).get("id", b"").decode()


def read_messages(bootstrap: str, topic: str, expected: set[str], timeout_s: float = 120) -> list:
    """Read ``topic`` from the beginning until every id in ``expected`` was seen (or timeout);
    returns every message read (duplicates included)."""
    missing = set(expected)
    checked = 0

    def done(records) -> bool:
        nonlocal checked
        for msg in records[checked:]:
            missing.discard(event_id(msg))
        checked = len(records)
        return not missing

    return read_until(bootstrap, topic, done, timeout_s)


def read_ids(bootstrap: str, topic: str, expected: set[str], timeout_s: float = 120) -> list[Delivered]:
    """:func:`read_messages` as relay.verify.Delivered records, for detect_gaps."""
    return [Delivered(m.key().decode() if m.key() is not None else None, event_id(m), m.partition(), m.offset())
            for m in read_messages(bootstrap, topic, expected, timeout_s)]
