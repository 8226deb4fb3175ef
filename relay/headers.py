"""Kafka header names and topic patterns: the wire contract (docs/ and the README), in one place."""

from __future__ import annotations

import re
from enum import StrEnum


class Header(StrEnum):
    ID = "id"
    TYPE = "type"
    AGGREGATE_TYPE = "aggregatetype"
    PAYLOAD_SCHEMA = "payload-schema"  # declared schema the payload was validated against
    IDEMPOTENCY_KEY = "idempotency-key"
    TRACEPARENT = "traceparent"
    SAGA_ID = "saga-id"
    CAUSATION_ID = "causation-id"
    CORRELATION_ID = "correlation-id"
    DLQ_ORIGINAL_TOPIC = "dlq.original.topic"
    DLQ_ORIGINAL_PARTITION = "dlq.original.partition"
    DLQ_ORIGINAL_OFFSET = "dlq.original.offset"
    DLQ_ERROR_CLASS = "dlq.error.class"
    DLQ_ERROR_MESSAGE = "dlq.error.message"
    DLQ_ATTEMPTS = "dlq.attempts"
    DLQ_REASON = "dlq.reason"  # decode | handler | rejected | exhausted | internal
    DLQ_FIRST_FAILURE_AT = "dlq.first-failure-at"
    RETRY_ATTEMPT = "retry.attempt"  # the attempt a retry-stage record will be (2 = first retry)
    RETRY_DUE_AT = "retry.due-at"  # epoch seconds before which a stage consumer must not handle it
    RETRY_ROLE = "retry.role"  # head (it failed) | behind (parked behind its key's head)
    RETRY_FIRST_FAILURE_AT = "retry.first-failure-at"
    RETRY_SEQ = "retry.seq"  # a behind record's place among its key's parked records (1, 2, ...)
    RETRY_REQUEUES = "retry.requeues"  # times a behind record was put back to wait for its turn
    DLQ_REPLAYS = "dlq.replays"  # how often this record was replayed from a dead-letter topic
    DLQ_OUTBOX_LSN = "dlq.outbox.lsn"  # an outbox row the connector could not publish: its WAL position
    DLQ_OUTBOX_TXID = "dlq.outbox.txid"
    DLQ_VALUE_OMITTED = "dlq.value-omitted"  # why the value is not in the dead letter (the row keeps it)


EVENT_TOPIC_PREFIX = "outbox.event."
# Kafka topic names: [a-zA-Z0-9._-], at most 249 chars; leave room for the prefix and suffixes.
AGGREGATE_TYPE_RE = re.compile(r"^[A-Za-z0-9._-]{1,200}$")

# Producers of ours must place records where Java/Debezium does, or partition-local dedup fails.
PARTITIONER = "murmur2_random"


def event_topic(aggregatetype: str) -> str:
    """``outbox.event.<aggregatetype>``: where every event of that aggregate type is routed."""
    return f"{EVENT_TOPIC_PREFIX}{aggregatetype}"


def collision_key(name: str) -> str:
    """Kafka refuses a topic whose name equals an existing one once '.' and '_' are treated alike
    (``order.item`` vs ``order_item``: metric names would clash); so do we, for aggregate types."""
    return name.replace(".", "_")


def colliding(names: list[str]) -> list[tuple[str, str]]:
    """Pairs of distinct names in ``names`` whose topics Kafka would refuse side by side."""
    first: dict[str, str] = {}
    pairs = []
    for name in names:
        seen = first.setdefault(collision_key(name), name)
        if seen != name:
            pairs.append((seen, name))
    return pairs


def retry_topic(topic: str, stage: int) -> str:
    return f"{topic}.retry.{stage}"


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


DLQ_SUFFIX = ".dlq"
# rows the outbox connector could not publish, moved aside by `relay outbox unblock --dead-letter`
OUTBOX_DLQ_TOPIC = "outbox.dlq"
