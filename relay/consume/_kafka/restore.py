"""Rebuild table partitions from their changelogs before their records are handled.

Reads each changelog partition from its beginning to the high watermark taken at the start (a
write after that is this worker's own) with an unassigned, non-committing consumer. A changelog
that cannot be read within ``timeout_s`` is an error: handling without the inbox would handle
every recent event again.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from relay.consume._kafka.tables import ChangelogTable
from relay.errors import KafkaUnavailable

log = logging.getLogger("relay.consumer")


def restore(config: dict[str, Any], wanted: list[tuple[ChangelogTable, int]], timeout_s: float = 120.0) -> int:
    """Restore every (table, partition) of ``wanted``; the number of changelog records read."""
    if not wanted:
        return 0
    by_tp = {(t.topic, p): t for t, p in wanted}
    reader = Consumer({**config, "group.id": "relay-restore", "enable.auto.commit": False,
                       "enable.partition.eof": False, "isolation.level": "read_uncommitted"})
    try:
        ends: dict[tuple[str, int], int] = {}
        for (topic, p) in by_tp:
            low, high = reader.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            by_tp[(topic, p)].restoring(p)
            if high > low:
                ends[(topic, p)] = high
        if not ends:
            return 0
        reader.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in ends])
        read, deadline = 0, time.monotonic() + timeout_s
        while ends:
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"restoring {sorted(ends)} did not reach the end within {timeout_s:.0f} s")
            for msg in reader.consume(10_000, 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaUnavailable(f"restoring {msg.topic()}[{msg.partition()}]: {err.str()}")
                name, partition, offset = msg.topic(), msg.partition(), msg.offset()
                assert name is not None and partition is not None and offset is not None  # a record, not an error
                tp = (name, partition)
                by_tp[tp].apply(partition, msg.key(), msg.value())
                read += 1
                end = ends.get(tp)
                if end is not None and offset >= end - 1:
                    del ends[tp]
            for tp, end in list(ends.items()):  # compaction can leave the last offsets empty
                position = reader.position([TopicPartition(*tp)])[0].offset
                if position >= end:
                    del ends[tp]
        return read
    finally:
        reader.close()
