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

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from relay.consume._kafka.tables import ChangelogTable
from relay.errors import KafkaAccessDenied, KafkaUnavailable
from relay.kafka_access import is_denied

log = logging.getLogger("relay.consumer")


def _watermarks(reader: Consumer, tp: TopicPartition, deadline: float) -> tuple[int, int]:
    """The partition's (low, high) offsets; retried while the broker says to (a changelog created
    a moment ago has no leader yet: NOT_LEADER_FOR_PARTITION, UNKNOWN_TOPIC_OR_PART)."""
    while True:
        try:
            return reader.get_watermark_offsets(tp, timeout=max(1.0, deadline - time.monotonic()))
        except KafkaException as exc:
            err = exc.args[0]
            if not (isinstance(err, KafkaError) and (err.retriable() or err.code() in _SETTLING)) \
                    or time.monotonic() > deadline:
                raise KafkaUnavailable(f"changelog {tp.topic}[{tp.partition}]: {exc}") from None
            log.info("changelog %s[%d] not ready (%s); retrying", tp.topic, tp.partition, err.str())
            time.sleep(0.5)


_SETTLING = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
             KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION, KafkaError._TIMED_OUT)


def restore_group(group: str) -> str:
    """The group id the restore reader carries (it only assigns, never joins or commits, but
    librdkafka still looks its coordinator up: under ACLs the worker needs a grant on it)."""
    return f"{group}-restore"


def restore(config: dict[str, Any], wanted: list[tuple[ChangelogTable, int]], timeout_s: float = 120.0,
            group: str = "relay") -> int:
    """Restore every (table, partition) of ``wanted``; the number of changelog records read.
    ``group``: the worker's group (the reader carries :func:`restore_group` of it)."""
    if not wanted:
        return 0
    by_tp = {(t.topic, p): t for t, p in wanted}
    reader = Consumer({**config, "group.id": restore_group(group), "enable.auto.commit": False,
                       "enable.partition.eof": False, "isolation.level": "read_uncommitted"})
    try:
        ends: dict[tuple[str, int], int] = {}
        deadline = time.monotonic() + timeout_s
        for (topic, p) in by_tp:
            low, high = _watermarks(reader, TopicPartition(topic, p), deadline)
            by_tp[(topic, p)].restoring(p)
            if high > low:
                ends[(topic, p)] = high
        if not ends:
            return 0
        reader.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in ends])
        read = 0
        while ends:
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"restoring {sorted(ends)} did not reach the end within {timeout_s:.0f} s")
            for msg in reader.consume(10_000, 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    if is_denied(err.code()):  # an ACL is missing: not a matter of waiting
                        raise KafkaAccessDenied(f"restoring {msg.topic() or 'changelogs'} with group "
                                                f"{restore_group(group)}: {err.str()}; expected an ACL that allows "
                                                "it (docs/security.md)", resource=f"group {restore_group(group)}")
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
