"""Reads what Faust skipped (see relay.handling.continuity): the group's committed offsets, and the
records of an offset range, with an independent confluent-kafka consumer.

The consumer carries the app's ``group.id`` only to *read* committed offsets; it never subscribes
(so it never joins the group) and never commits. It reads ``read_uncommitted`` like Faust's
consumer, so a range holds exactly the records Faust would have handed over. Blocking calls; the
agent runs them in a thread.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, TopicPartition

from relay.errors import KafkaUnavailable
from relay.kafka_logs import kafka_logger


@dataclass
class Record:
    """The attributes of a Faust message that the consumer reads, for a record read here."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list = field(default_factory=list)
    timestamp: float | None = None


class GapReader:
    def __init__(self, bootstrap: str, group_id: str, timeout_s: float = 30.0,
                 security: dict[str, Any] | None = None) -> None:
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._consumer_instance: Consumer | None = None
        self._config = {
            "bootstrap.servers": bootstrap, "group.id": group_id, "enable.auto.commit": False,
            "isolation.level": "read_uncommitted", "fetch.wait.max.ms": 10,
            # a range start below the log start (deleted by retention) reads from the log start,
            # never jumps to the end
            "auto.offset.reset": "earliest", "max.partition.fetch.bytes": 262144, "fetch.max.bytes": 1048576,
            "queued.max.messages.kbytes": 4096,
            "enable.partition.eof": True, "client.id": f"{group_id}-gapfill",
            "logger": kafka_logger(),  # librdkafka's lines: Python logging, rate-limited
            **(security or {})}  # TLS / SASL (relay.kafka_security)

    @property
    def _consumer(self) -> Consumer:
        """Created on first use: building an app must not connect anywhere."""
        if self._consumer_instance is None:
            self._consumer_instance = Consumer(self._config)
        return self._consumer_instance

    def committed(self, topic: str, partition: int) -> int:
        """The group's committed offset (next to read); the log start when none was committed
        (the app reads from the earliest offset then)."""
        return self.committed_many([(topic, partition)])[(topic, partition)]

    def committed_many(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """:meth:`committed` for several partitions in one request."""
        if not tps:
            return {}
        with self._lock:
            try:
                got = self._consumer.committed([TopicPartition(t, p) for t, p in tps], timeout=self.timeout_s)
                result = {}
                for tp in got:
                    if tp.offset != OFFSET_INVALID and tp.offset >= 0:
                        result[(tp.topic, tp.partition)] = tp.offset
                    else:
                        low, _ = self._consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition),
                                                                      timeout=self.timeout_s)
                        result[(tp.topic, tp.partition)] = low
                return result
            except KafkaException as exc:
                raise KafkaUnavailable(f"reading committed offsets of {len(tps)} partitions: {exc}") from None

    def read(self, topic: str, partition: int, first: int, end: int) -> list[Record]:
        """Every record with ``first <= offset < end`` (possibly none: transaction markers)."""
        records: list[Record] = []
        deadline = time.monotonic() + self.timeout_s
        with self._lock:
            self._consumer.assign([TopicPartition(topic, partition, first)])
            try:
                while time.monotonic() < deadline:
                    msg = self._consumer.poll(0.2)
                    if msg is None:
                        continue
                    err, offset = msg.error(), msg.offset()
                    if err:  # the end of the log (offset = high watermark) ends it too
                        if err.code() == KafkaError._PARTITION_EOF and offset is not None and offset >= end:
                            return records
                        continue
                    assert offset is not None  # a record has one
                    if offset >= end:
                        return records
                    ts_type, ts_ms = msg.timestamp()
                    records.append(Record(topic, partition, offset, msg.key(), msg.value(),
                                          list(msg.headers() or []), ts_ms / 1000 if ts_type else None))
                raise KafkaUnavailable(f"reading {topic}[{partition}] offsets {first}..{end - 1}: not done "
                                       f"within {self.timeout_s:.0f} s ({len(records)} records so far)")
            finally:
                self._consumer.unassign()

    def close(self) -> None:
        with self._lock:
            if self._consumer_instance is not None:
                self._consumer_instance.close()
