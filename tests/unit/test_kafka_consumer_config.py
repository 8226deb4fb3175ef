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


def test_static_membership_only_when_an_instance_id_is_set():
    assert "group.instance.id" not in _worker({})._consumer_config()
    assert _worker({"RELAY_CONSUMER_INSTANCE_ID": "orders-0"})._consumer_config()["group.instance.id"] == "orders-0"


def test_an_instance_id_with_the_faust_engine_is_refused_naming_both():
    import pytest

    from relay.errors import ConfigError

    with pytest.raises(ConfigError, match="consumer_instance_id.*kafka"):
        load_settings({"RELAY_CONSUMER_INSTANCE_ID": "orders-0", "RELAY_CONSUMER_ENGINE": "faust"})
