"""The idempotent consumer agent: decode -> inbox check -> handler -> inbox record.

Guarantees (per source partition, concurrency 1):
- every record is handled at least once; a record whose id is already in the inbox is counted as
  a duplicate and not handed to the handler again;
- events are handled in partition order, hence in commit order per aggregate;
- nothing escapes the loop: a record that cannot be decoded, or whose handler fails with a
  terminal error, goes to ``<topic>.dlq`` with the reason in headers (ARCHITECTURE.md); a
  retriable error is retried in place with capped backoff, holding the partition so that order
  is kept. (Faust would otherwise ack and silently skip a message whose agent raised.)
- the inbox entry is written after the handler returned, to a compacted changelog on the same
  partition as the event, so a restarted worker sees it.
Concurrency stays 1: faust-streaming#606 commits past in-flight events with concurrency > 1.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

import faust

from relay.errors import DecodeError, RelayError
from relay.handling import Event, Inbox, decode
from relay.headers import Header, dlq_topic
from relay.metrics import ConsumerMetrics

log = logging.getLogger("relay.consumer")

Handler = Callable[[Event, Any], Awaitable[None] | None]
MAX_INPLACE_RETRIES = 5


@dataclass
class ConsumerSpec:
    topic: str
    handler: Handler
    context: Any
    metrics: ConsumerMetrics
    backoff_s: tuple[float, ...] = field(default=(0.1, 0.5, 1.0, 2.0, 5.0))


def _is_retriable(exc: BaseException) -> bool:
    if isinstance(exc, RelayError):
        return exc.retriable
    return isinstance(exc, (TimeoutError, ConnectionError, asyncio.TimeoutError))


def add_idempotent_consumer(app: faust.App, spec: ConsumerSpec, *, inbox_name: str = "inbox") -> faust.types.AgentT:
    source = app.topic(spec.topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw", allow_empty=True)
    dead = app.topic(dlq_topic(spec.topic), key_type=bytes, value_type=bytes,
                     key_serializer="raw", value_serializer="raw")
    table = app.Table(inbox_name, default=None, partitions=app.conf.topic_partitions,
                      key_type=str, value_type=float)
    inbox = Inbox(table)
    m = spec.metrics

    async def to_dlq(message: Any, reason: str, exc: BaseException, attempts: int) -> None:
        headers = dict(message.headers or {})
        headers.update({
            Header.DLQ_ORIGINAL_TOPIC.value: message.topic.encode(),
            Header.DLQ_ORIGINAL_PARTITION.value: str(message.partition).encode(),
            Header.DLQ_ORIGINAL_OFFSET.value: str(message.offset).encode(),
            Header.DLQ_ERROR_CLASS.value: type(exc).__name__.encode(),
            Header.DLQ_ERROR_MESSAGE.value: str(exc)[:1000].encode(),
            Header.DLQ_ATTEMPTS.value: str(attempts).encode(),
            Header.DLQ_FIRST_FAILURE_AT.value: datetime.now(timezone.utc).isoformat().encode(),
        })
        await dead.send(key=message.key, value=message.value, headers=headers)
        m.dead_lettered.labels(spec.topic, reason).inc()
        log.error("dead-lettered %s/%s@%s: %s: %s", message.topic, message.partition, message.offset,
                  type(exc).__name__, exc)

    async def handle_one(message: Any) -> None:
        try:
            event = decode(key=message.key, value=message.value, headers=message.headers,
                           topic=message.topic, partition=message.partition, offset=message.offset,
                           timestamp_ms=int(message.timestamp * 1000) if message.timestamp else None)
        except DecodeError as exc:
            await to_dlq(message, "decode", exc, 1)
            return
        if inbox.seen(event.id):
            m.duplicates.labels(spec.topic).inc()
            return
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                result = spec.handler(event, spec.context)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:  # noqa: BLE001 - every failure is routed, none escapes
                retriable = _is_retriable(exc)
                m.handler_errors.labels(spec.topic, str(retriable).lower()).inc()
                if retriable and attempt <= MAX_INPLACE_RETRIES:
                    delay = spec.backoff_s[min(attempt - 1, len(spec.backoff_s) - 1)]
                    log.warning("retriable failure on %s (attempt %d), retrying in %.1fs: %s",
                                event.id, attempt, delay, exc)
                    await asyncio.sleep(delay)
                    continue
                await to_dlq(message, "handler", exc, attempt)
                return
            m.handler_latency.labels(spec.topic).observe(time.perf_counter() - started)
            break
        inbox.record(event.id, time.time())
        m.handled.labels(spec.topic).inc()

    async def consume(stream: faust.StreamT) -> None:
        async for ev in stream.events():
            await handle_one(ev.message)

    return app.agent(source, name=f"consume-{spec.topic}", concurrency=1)(consume)
