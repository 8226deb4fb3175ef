"""Dead letters: the headers a dead letter carries, reading dead-letter topics, and replay.

A dead letter is the original record (same key, value and headers) plus the ``dlq.*`` headers
(relay.headers): original topic/partition/offset, error class and message, attempts, time of the
first failure. Replay produces the original record back to its original topic with the original
key and headers and ``dlq.replays`` incremented (relay/handling/redrive_run.py); the consumers'
inbox skips a replayed event that was handled in the meantime. Dead-letter topics are append-only:
a replayed record stays there, and the redrive position (relay/handling/redrive.py) says it was
replayed. A replayed record that fails again is dead-lettered again: a new dead letter, whose
``dlq.replays`` says how often its event was replayed before.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, cast

from confluent_kafka import Consumer, Message, TopicPartition

from relay.config import Settings
from relay.errors import KafkaUnavailable, RelayError
from relay.handling.dlq_clients import list_topic_names, reader_config
from relay.headers import DLQ_SUFFIX, Header

Headers = Sequence[tuple[str, bytes | None]]
_DLQ_PREFIX = "dlq."


def dead_letter_headers(original: Headers, *, topic: str, partition: int, offset: int, error: BaseException,
                        attempts: int, first_failure_at: datetime | None = None,
                        reason: str | None = None) -> list[tuple[str, bytes]]:
    """The original headers (without earlier dlq.* ones) plus why and where it died."""
    first = first_failure_at or datetime.now(UTC)
    # a header without a value (None) is kept as it came; Kafka clients accept it
    kept = cast("list[tuple[str, bytes]]",
                [(k, v) for k, v in original if not k.startswith(_DLQ_PREFIX) or k == Header.DLQ_REPLAYS.value])
    return kept + [
        (Header.DLQ_ORIGINAL_TOPIC.value, topic.encode()),
        (Header.DLQ_ORIGINAL_PARTITION.value, str(partition).encode()),
        (Header.DLQ_ORIGINAL_OFFSET.value, str(offset).encode()),
        (Header.DLQ_ERROR_CLASS.value, type(error).__name__.encode()),
        (Header.DLQ_ERROR_MESSAGE.value, str(error)[:2000].encode("utf-8", "replace")),
        (Header.DLQ_ATTEMPTS.value, str(attempts).encode()),
        (Header.DLQ_FIRST_FAILURE_AT.value, first.isoformat().encode()),
    ] + ([(Header.DLQ_REASON.value, reason.encode())] if reason else [])


def replay_headers(headers: Headers) -> list[tuple[str, bytes | None]]:
    """The original headers, dlq.* removed, ``dlq.replays`` + 1."""
    replays = 0
    kept = []
    for k, v in headers:
        if k == Header.DLQ_REPLAYS.value:
            replays = int(v or b"0")
        elif not k.startswith(_DLQ_PREFIX):
            kept.append((k, v))
    return kept + [(Header.DLQ_REPLAYS.value, str(replays + 1).encode())]


@dataclass(frozen=True)
class DeadLetter:
    dlq_topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]

    def header(self, name: Header) -> str | None:
        for k, v in self.headers:
            if k == name.value:
                return None if v is None else v.decode("utf-8", "replace")
        return None

    @property
    def event_id(self) -> str | None:
        return self.header(Header.ID)

    @property
    def original_topic(self) -> str:
        return self.header(Header.DLQ_ORIGINAL_TOPIC) or self.dlq_topic.removesuffix(DLQ_SUFFIX)

    @property
    def origin(self) -> str:
        """Where it died: topic/partition@offset, or for an outbox row the connector could not
        publish (`relay outbox unblock --dead-letter`) its topic and WAL position."""
        lsn = self.header(Header.DLQ_OUTBOX_LSN)
        if lsn is not None:
            return f"{self.original_topic} (outbox row at LSN {lsn}, never published)"
        return (f"{self.original_topic}/{self.header(Header.DLQ_ORIGINAL_PARTITION)}"
                f"@{self.header(Header.DLQ_ORIGINAL_OFFSET)}")

    def summary(self) -> dict[str, Any]:
        return {
            "dlq": f"{self.dlq_topic}/{self.partition}@{self.offset}", "id": self.event_id,
            "key": None if self.key is None else self.key.decode("utf-8", "replace"),
            "original": self.origin,
            "error_class": self.header(Header.DLQ_ERROR_CLASS), "error": self.header(Header.DLQ_ERROR_MESSAGE),
            "attempts": self.header(Header.DLQ_ATTEMPTS), "first_failure_at": self.header(Header.DLQ_FIRST_FAILURE_AT),
            "replays": int(self.header(Header.DLQ_REPLAYS) or 0),
        }

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["key"] = None if self.key is None else self.key.decode("utf-8", "replace")
        data["value"] = None if self.value is None else self.value.decode("utf-8", "replace")
        data["headers"] = {k: None if v is None else v.decode("utf-8", "replace") for k, v in self.headers}
        return data


def dlq_topics(settings: Settings) -> list[str]:
    """Every ``*.dlq`` topic; KafkaUnavailable within a few seconds if Kafka does not answer."""
    return sorted(t for t in list_topic_names(settings) if t.endswith(DLQ_SUFFIX))


Watermarks = dict[int, tuple[int, int]]


def watermarks(consumer: Consumer, topic: str, timeout_s: float = 10) -> Watermarks:
    """{partition: (low, high)} of ``topic`` (high = the end a read_committed reader sees)."""
    meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if meta is None or meta.error is not None:
        raise RelayError(f"dead-letter topic {topic!r} does not exist")
    return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            for p in sorted(meta.partitions)}


def read_range(consumer: Consumer, topic: str, starts: dict[int, int], ends: dict[int, int],
               timeout_s: float = 60) -> list[DeadLetter]:
    """Every dead letter of ``topic`` from ``starts`` up to (excluding) ``ends``, per partition, in
    offset order. Raises KafkaUnavailable rather than return part of it."""
    todo = {p: end for p, end in ends.items() if end > starts.get(p, 0)}
    if not todo:
        return []
    consumer.assign([TopicPartition(topic, p, starts.get(p, 0)) for p in todo])
    out: list[DeadLetter] = []
    deadline = time.monotonic() + timeout_s
    try:
        while todo:
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"reading {topic} did not reach its end offsets within {timeout_s:.0f} s "
                                       f"(partitions {sorted(todo)})")
            for msg in consumer.consume(500, 0.5):
                partition, offset = msg.partition(), msg.offset()
                if msg.error() or partition is None or offset is None or offset >= todo.get(partition, -1):
                    continue
                out.append(_letter(topic, partition, offset, msg))
            # the position passes transaction markers too, which are never delivered as records
            for tp in consumer.position([TopicPartition(topic, p) for p in todo]):
                if tp.offset >= todo[tp.partition]:
                    del todo[tp.partition]
    finally:
        consumer.unassign()
    return sorted(out, key=lambda d: (d.partition, d.offset))


def _letter(topic: str, partition: int, offset: int, msg: Message) -> DeadLetter:
    key, value = msg.key(), msg.value()
    headers = cast("list[tuple[str, bytes | None]]", msg.headers() or [])
    return DeadLetter(topic, partition, offset, key.encode() if isinstance(key, str) else key,
                      value.encode() if isinstance(value, str) else value, tuple(headers))


def read_dead_letters(settings: Settings, topics: Iterable[str], timeout_s: float = 60) -> list[DeadLetter]:
    """Every record currently in ``topics`` (beginning to the end offsets at call time)."""
    consumer = Consumer(reader_config(settings, f"relay-dlq-read-{time.time_ns()}"))
    out: list[DeadLetter] = []
    try:
        for topic in topics:
            marks = watermarks(consumer, topic)
            out += read_range(consumer, topic, {p: lo for p, (lo, _) in marks.items()},
                              {p: hi for p, (_, hi) in marks.items()}, timeout_s)
    finally:
        consumer.close()
    return sorted(out, key=lambda d: (d.dlq_topic, d.partition, d.offset))
