"""A processor app for the consumer benchmark: the idempotent consumer with a handler that does
nothing (the consumer decodes the record and checks/records the inbox around it).

``relay worker relay.bench.noop_app:create_app [--store memory|rocksdb]`` with BENCH_TOPIC=<topic>.
The app id (consumer group) is ``relay-bench-<store>-<topic>``: one per store, so each store's run
reads the topic from the start; its inbox changelog is ``<app id>-inbox-changelog``.
With BENCH_HANDLED_LOG=<file> the handler appends ``<event id> <handler clock, epoch s>`` per
event (line-buffered): the latency benchmark joins it with the outbox ``created_at``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from relay.config import Settings
from relay.handling import Event
from relay.metrics import ConsumerMetrics


def app_id(topic: str, store: str) -> str:
    return f"relay-bench-{store}-{topic}"


async def handle(event: Event, ctx: Any) -> None:
    """No side effect (or one line in the handled log): the event arrives already decoded."""
    if ctx is not None:
        ctx.write(f"{event.id} {time.time():.6f}\n")


def create_app(settings: Settings, *, store: str = "memory"):
    from relay.consume._faust.app import create_app as create_faust_app
    from relay.consume._faust.agents import ConsumerSpec, add_idempotent_consumer

    topic = os.environ["BENCH_TOPIC"]
    app = create_faust_app(settings, app_id(topic, store), store=store)
    metrics = ConsumerMetrics.create()
    path = os.environ.get("BENCH_HANDLED_LOG")
    log = open(path, "a", buffering=1, encoding="utf-8") if path else None  # noqa: SIM115 - lives with the app
    add_idempotent_consumer(app, ConsumerSpec.from_settings(settings, topic=topic, handler=handle, context=log,
                                                            metrics=metrics))
    app.relay_metrics = metrics  # type: ignore[attr-defined]
    return app
