"""An independent Kafka reader for tests: plain confluent-kafka, no code of ours on the read path."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient


def wait_for_topic(bootstrap: str, topic: str, timeout_s: float = 30) -> int:
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
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                records.append(msg)
    finally:
        consumer.close()
    return records
