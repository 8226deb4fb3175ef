"""The consumer of the consumer benchmark: a subscription whose handler does nothing (the
pipeline decodes the record and checks/records the inbox around it).

``relay worker relay.bench.noop_app:make_consumer --store memory|rocksdb`` with BENCH_TOPIC=<topic>
and BENCH_STORE=<the same store>. The consumer (group) is ``relay-bench-<store>-<topic>``: one
per store, so each store's run reads the topic from the start; its inbox changelog is
``<app id>-inbox-<topic>-changelog``. With BENCH_HANDLED_LOG=<file> the handler appends
``<event id> <handler clock, epoch s>`` per event (line-buffered): the latency benchmark joins it
with the outbox ``created_at``.
"""

from __future__ import annotations

import os
import time

from relay import Consumer, Event, Settings


def app_id(topic: str, store: str) -> str:
    return f"relay-bench-{store}-{topic}"


def inbox_changelog(topic: str, store: str) -> str:
    return f"{app_id(topic, store)}-inbox-{topic}-changelog"


def make_consumer(settings: Settings) -> Consumer:
    topic, store = os.environ["BENCH_TOPIC"], os.environ.get("BENCH_STORE", "memory")
    consumer = Consumer(app_id(topic, store), store="memory" if store == "kafka" else store)
    path = os.environ.get("BENCH_HANDLED_LOG")
    if path is None:
        @consumer.subscribe(topic=topic)
        async def handle(event: Event) -> None:
            """No side effect: the event arrives already decoded."""
        return consumer
    log = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives with the worker

    @consumer.subscribe(topic=topic)
    async def handle_logged(event: Event) -> None:
        log.write(f"{event.id} {time.time():.6f}\n")

    @consumer.on_shutdown
    def close(_ctx: object) -> None:
        log.close()
    return consumer
