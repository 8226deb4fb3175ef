"""A processor app for the consumer benchmark: the idempotent consumer with a handler that does
nothing (the consumer decodes the record and checks/records the inbox around it).

``relay worker relay.bench.noop_app:create_app [--store memory|rocksdb]`` with BENCH_TOPIC=<topic>.
The app id (consumer group) is ``relay-bench-<store>-<topic>``: one per store, so each store's run
reads the topic from the start; its inbox changelog is ``<app id>-inbox-changelog``.
"""

from __future__ import annotations

import os

from relay.config import Settings
from relay.handling import Event
from relay.metrics import ConsumerMetrics


def app_id(topic: str, store: str) -> str:
    return f"relay-bench-{store}-{topic}"


async def handle(event: Event, ctx: None) -> None:
    """No side effect: the event arrives already decoded (payload, id, key)."""
    return None


def create_app(settings: Settings, *, store: str = "memory"):
    from processors.app import create_app as create_faust_app
    from processors.consumer import ConsumerSpec, add_idempotent_consumer

    topic = os.environ["BENCH_TOPIC"]
    app = create_faust_app(settings, app_id(topic, store), store=store)
    metrics = ConsumerMetrics.create()
    add_idempotent_consumer(app, ConsumerSpec.from_settings(settings, topic=topic, handler=handle, context=None,
                                                            metrics=metrics))
    app.relay_metrics = metrics  # type: ignore[attr-defined]
    return app
