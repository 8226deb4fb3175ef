"""Redrive: send dead letters back to their original topic, each once, resumable.

Guarantee (for read_committed readers of the source topic): each dead letter is replayed at most
once per redrive position, and a redrive that stops (error, Ctrl-C, SIGKILL) loses nothing and
repeats nothing: the replayed records and the new position (the ``relay-dlq-replay`` group's
committed offsets on the ``.dlq`` partitions) commit in one Kafka transaction, every ``BATCH``
records or every second. The transactional id is per dead-letter topic, so starting a redrive
first aborts what an interrupted one left open, and fences one still running (it stops with an error).
Records keep their dead-letter partition's order, so a key's letters are replayed in their order.
read_uncommitted readers (aiokafka's and Faust's default) may also see the copies of an aborted
batch; the inbox drops the second copy by event id.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from relay.config import Settings
from relay.errors import KafkaUnavailable, RelayError
from relay.handling.dlq import DeadLetter, Watermarks, read_range, replay_headers, watermarks
from relay.handling.dlq_clients import reader_config, redrive_producer_config
from relay.handling.redrive import REDRIVE_GROUP, Position, RateLimiter, plan, position_from_commit

BATCH = 100  # records per transaction at most
BATCH_S = 1.0  # and at most this long per transaction
TIMEOUT_S = 30.0

Progress = Callable[[str, int, int, float], None]  # topic, replayed, to replay, seconds


@dataclass
class RedriveResult:
    topic: str
    replayed: list[DeadLetter] = field(default_factory=list)
    already_replayed: list[DeadLetter] = field(default_factory=list)
    positions: dict[int, Position] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"topic": self.topic, "replayed": len(self.replayed),
                "ids": [d.event_id for d in self.replayed],
                "already_replayed": [f"{d.dlq_topic}/{d.partition}@{d.offset}" for d in self.already_replayed],
                "positions": {p: pos.next_offset for p, pos in sorted(self.positions.items())}}


def read_positions(consumer: Consumer, topic: str, marks: Watermarks) -> dict[int, Position]:
    """The redrive position of every partition of ``topic`` (committed offsets of the redrive group)."""
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in marks], timeout=TIMEOUT_S)
    except KafkaException as exc:
        raise KafkaUnavailable(f"reading the redrive position of {topic}: {exc.args[0].str()}") from None
    return {tp.partition: position_from_commit(tp.offset, tp.metadata, low=marks[tp.partition][0],
                                               high=marks[tp.partition][1]) for tp in committed}


def letters_with_status(settings: Settings, topics: list[str]) -> list[tuple[DeadLetter, bool]]:
    """Every dead letter of ``topics`` and whether it was replayed (by the redrive position)."""
    consumer = Consumer(reader_config(settings, REDRIVE_GROUP))
    out: list[tuple[DeadLetter, bool]] = []
    try:
        for topic in topics:
            marks = watermarks(consumer, topic)
            positions = read_positions(consumer, topic, marks)
            letters = read_range(consumer, topic, {p: lo for p, (lo, _) in marks.items()},
                                 {p: hi for p, (_, hi) in marks.items()})
            out += [(d, positions[d.partition].is_replayed(d.offset)) for d in letters]
    finally:
        consumer.close()
    return out


def redrive(settings: Settings, topic: str, *, event_id: str | None = None, force: bool = False,
            rate: float | None = None, dry_run: bool = False, progress: Progress | None = None) -> RedriveResult:
    """Replay the dead letters of ``topic`` not replayed yet (``event_id``: only that event's)."""
    producer = None if dry_run else _transactional_producer(settings, topic)
    consumer = Consumer(reader_config(settings, REDRIVE_GROUP))
    try:
        marks = watermarks(consumer, topic)
        positions = read_positions(consumer, topic, marks)
        starts = {p: (lo if event_id is not None else positions[p].next_offset) for p, (lo, _) in marks.items()}
        letters = read_range(consumer, topic, starts, {p: hi for p, (_, hi) in marks.items()})
        chosen = plan(letters, positions, event_id=event_id, force=force)
        result = RedriveResult(topic, already_replayed=chosen.already_replayed, positions=dict(positions))
        _check_targets(consumer, chosen.send)
        if dry_run or producer is None:
            result.replayed = chosen.send
            return result
        final = dict(positions)
        if event_id is None:  # --all: afterwards everything up to the end offsets read is replayed
            final = {p: positions[p].passed(hi - 1) if hi > 0 else positions[p] for p, (_, hi) in marks.items()}
        _send(producer, consumer, result, chosen.send, by_id=event_id is not None, final=final,
              changed=final != positions, rate=rate, progress=progress)
        return result
    finally:
        consumer.close()


def _check_targets(consumer: Consumer, letters: list[DeadLetter]) -> None:
    """Refuse before sending anything if a letter's original topic does not exist (broker
    auto-creation is off: its record would wait for the topic until the transaction times out)."""
    targets = sorted({d.original_topic for d in letters})
    if not targets:
        return
    existing = consumer.list_topics(timeout=TIMEOUT_S).topics
    missing = [t for t in targets if t not in existing]
    if missing:
        raise RelayError(f"dead letters point at topic(s) that do not exist: {', '.join(missing)}; create them "
                         "(relay topics apply) and replay again; nothing was sent")


def _transactional_producer(settings: Settings, topic: str) -> Producer:
    producer = Producer(redrive_producer_config(settings, f"{REDRIVE_GROUP}.{topic}"))
    try:
        producer.init_transactions(TIMEOUT_S)  # aborts what an interrupted redrive left open
    except KafkaException as exc:
        raise KafkaUnavailable(f"starting the redrive of {topic}: {exc.args[0].str()}") from None
    return producer


def _send(producer: Producer, consumer: Consumer, result: RedriveResult, letters: list[DeadLetter], *,
          by_id: bool, final: dict[int, Position], changed: bool, rate: float | None,
          progress: Progress | None) -> None:
    limiter = RateLimiter(rate)
    failed: list[str] = []  # delivery errors: the cause a failed commit_transaction only counts
    batch: list[DeadLetter] = []
    started = began = time.monotonic()
    positions = result.positions

    def commit(new_positions: dict[int, Position]) -> None:
        offsets = [TopicPartition(result.topic, p, pos.next_offset, metadata=pos.metadata())
                   for p, pos in sorted(new_positions.items())]
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), TIMEOUT_S)
        producer.commit_transaction(TIMEOUT_S)
        result.replayed += batch
        result.positions = dict(new_positions)
        batch.clear()
        if progress:
            progress(result.topic, len(result.replayed), len(letters), time.monotonic() - began)

    try:
        for d in letters:
            limiter.wait()
            if not batch:
                producer.begin_transaction()
                started = time.monotonic()
            producer.produce(d.original_topic, key=d.key, value=d.value, headers=cast(Any, replay_headers(d.headers)),
                             on_delivery=lambda err, _msg: failed.append(err.str()) if err else None)
            batch.append(d)
            positions = {**positions, d.partition: (positions[d.partition].with_replayed(d.offset) if by_id
                                                    else positions[d.partition].passed(d.offset))}
            if len(batch) >= BATCH or time.monotonic() - started >= BATCH_S:
                commit(positions)
        if batch or changed:
            if not batch:
                producer.begin_transaction()
            commit(final if not by_id else positions)
    except KafkaException as exc:
        _abort(producer)
        err = exc.args[0]
        cause = err.str() + (f" (first delivery error: {failed[0]})" if failed else "")
        recorded = f"{len(result.replayed)} replayed and recorded"
        if err.fatal():
            raise RelayError(f"redrive of {result.topic} stopped: {cause} (another `relay dlq replay` of this topic "
                             f"started?); {recorded}") from None
        raise RelayError(f"redrive of {result.topic} stopped: {cause}; {recorded}, run the same command again to "
                         "resume", retriable=err.retriable() or not failed) from None
    except BaseException:
        _abort(producer)
        raise


def _abort(producer: Producer) -> None:
    try:
        producer.abort_transaction(5)
    except KafkaException:
        pass  # nothing open, or fenced: the broker aborts it (transaction.timeout.ms)
