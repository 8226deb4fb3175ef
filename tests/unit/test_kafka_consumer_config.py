"""The kafka engine's consumer configuration comes from settings (no broker: the worker is only built)."""

from __future__ import annotations

from relay import Consumer, Event
from relay.config import load_settings
from relay.consume._kafka.worker import KafkaWorker


def _worker(env: dict[str, str]) -> KafkaWorker:
    consumer = Consumer("cfg-test", store="memory")

    @consumer.subscribe(topic="outbox.event.cfgtest")
    async def handle(event: Event) -> None:
        """Never runs."""

    return KafkaWorker(consumer, load_settings(env))


def test_fetch_wait_is_the_setting():
    assert _worker({})._consumer_config()["fetch.wait.max.ms"] == 500
    assert _worker({"RELAY_CONSUMER_FETCH_WAIT_MS": "10"})._consumer_config()["fetch.wait.max.ms"] == 10


def test_reads_only_committed_records():
    assert _worker({})._consumer_config()["isolation.level"] == "read_committed"
