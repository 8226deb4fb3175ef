"""Dead letters: the headers a dead letter carries, reading dead-letter topics, and replay.

A dead letter is the original record (same key, value and headers) plus the ``dlq.*`` headers of
ARCHITECTURE.md: original topic/partition/offset, error class and message, attempts, time of the
first failure. Replay produces the original record back to its original topic with the original
key and headers and ``dlq.replays`` incremented; the consumers' inbox skips a replayed event that
was handled in the meantime. Dead-letter topics are append-only: a replayed record stays there
(listing shows its replay count only on the copy in the source topic).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Iterable, Sequence

from confluent_kafka import Consumer, Producer, TopicPartition

from relay.config import Settings
from relay.errors import KafkaUnavailable, RelayError
from relay.headers import DLQ_SUFFIX, Header
from relay.topics import admin, producer_config

Headers = Sequence[tuple[str, bytes | None]]
_DLQ_PREFIX = "dlq."


def dead_letter_headers(original: Headers, *, topic: str, partition: int, offset: int, error: BaseException,
                        attempts: int, first_failure_at: datetime | None = None) -> list[tuple[str, bytes]]:
    """The original headers (without earlier dlq.* ones) plus why and where it died."""
    first = first_failure_at or datetime.now(timezone.utc)
    kept = [(k, v) for k, v in original if not k.startswith(_DLQ_PREFIX) or k == Header.DLQ_REPLAYS.value]
    return kept + [
        (Header.DLQ_ORIGINAL_TOPIC.value, topic.encode()),
        (Header.DLQ_ORIGINAL_PARTITION.value, str(partition).encode()),
        (Header.DLQ_ORIGINAL_OFFSET.value, str(offset).encode()),
        (Header.DLQ_ERROR_CLASS.value, type(error).__name__.encode()),
        (Header.DLQ_ERROR_MESSAGE.value, str(error)[:2000].encode("utf-8", "replace")),
        (Header.DLQ_ATTEMPTS.value, str(attempts).encode()),
        (Header.DLQ_FIRST_FAILURE_AT.value, first.isoformat().encode()),
    ]


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

    def summary(self) -> dict:
        return {
            "dlq": f"{self.dlq_topic}/{self.partition}@{self.offset}", "id": self.event_id,
            "key": None if self.key is None else self.key.decode("utf-8", "replace"),
            "original": f"{self.original_topic}/{self.header(Header.DLQ_ORIGINAL_PARTITION)}"
                        f"@{self.header(Header.DLQ_ORIGINAL_OFFSET)}",
            "error_class": self.header(Header.DLQ_ERROR_CLASS), "error": self.header(Header.DLQ_ERROR_MESSAGE),
            "attempts": self.header(Header.DLQ_ATTEMPTS), "first_failure_at": self.header(Header.DLQ_FIRST_FAILURE_AT),
            "replays": int(self.header(Header.DLQ_REPLAYS) or 0),
        }

    def as_dict(self) -> dict:
        data = asdict(self)
        data["key"] = None if self.key is None else self.key.decode("utf-8", "replace")
        data["value"] = None if self.value is None else self.value.decode("utf-8", "replace")
        data["headers"] = {k: None if v is None else v.decode("utf-8", "replace") for k, v in self.headers}
        return data


def dlq_topics(settings: Settings) -> list[str]:
    try:
        topics = admin(settings).list_topics(timeout=10).topics
    except Exception as exc:  # noqa: BLE001 - KafkaException
        raise KafkaUnavailable(f"Kafka at {settings.bootstrap_servers} unreachable: {exc}") from None
    return sorted(t for t in topics if t.endswith(DLQ_SUFFIX))


def read_dead_letters(settings: Settings, topics: Iterable[str], timeout_s: float = 30) -> list[DeadLetter]:
    """Every record currently in ``topics`` (beginning to the end offsets at call time)."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"relay-dlq-{time.time_ns()}",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    out: list[DeadLetter] = []
    try:
        assignment, ends = [], {}
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or meta.error is not None:
                raise RelayError(f"dead-letter topic {topic!r} does not exist")
            for p in meta.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if high > low:
                    assignment.append(TopicPartition(topic, p, low))
                    ends[(topic, p)] = high
        if not assignment:
            return []
        consumer.assign(assignment)
        deadline = time.monotonic() + timeout_s
        while ends and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                if msg.error():
                    continue
                where = (msg.topic(), msg.partition())
                out.append(DeadLetter(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                                      tuple(msg.headers() or ())))
                if where in ends and msg.offset() >= ends[where] - 1:
                    del ends[where]
    finally:
        consumer.close()
    return sorted(out, key=lambda d: (d.dlq_topic, d.partition, d.offset))


def replay(settings: Settings, letters: Iterable[DeadLetter]) -> int:
    """Produce each dead letter back to its original topic, in order; returns how many."""
    producer = Producer(producer_config(settings))
    failures: list[str] = []
    count = 0
    for d in letters:
        producer.produce(d.original_topic, key=d.key, value=d.value, headers=replay_headers(d.headers),
                         on_delivery=lambda err, _m: failures.append(err.str()) if err else None)
        count += 1
    if producer.flush(60) or failures:
        raise KafkaUnavailable(f"replay: {len(failures)} records not acknowledged ({failures[:3]})")
    return count
