"""Declared topics and the client settings every producer/consumer of ours shares.

``outbox.event.<type>`` topics are created with the declared partitions/replication (broker
auto-creation is off). Creating a topic that exists is a no-op; its partition count is never
changed (adding partitions would move aggregates and break partition-local dedup).
"""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from relay.config import Settings
from relay.errors import KafkaUnavailable, RelayError
from relay.headers import PARTITIONER, event_topic


def producer_config(settings: Settings, **extra: object) -> dict:
    """Idempotent producer placing keys exactly where Java clients (Debezium) do."""
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        "partitioner": PARTITIONER,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        # below the broker's default (1048588) so an oversized record fails at produce() time
        "message.max.bytes": 1_000_000,
        **extra,
    }


def admin(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.bootstrap_servers})


def declared_topics(settings: Settings) -> list[str]:
    return [event_topic(t) for t in settings.aggregate_types]


def apply_topics(settings: Settings, topics: list[str] | None = None, timeout_s: float = 30) -> dict[str, str]:
    """Create missing topics; returns {topic: "created" | "exists"}."""
    topics = declared_topics(settings) if topics is None else topics
    client = admin(settings)
    try:
        existing = set(client.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise KafkaUnavailable(f"Kafka at {settings.bootstrap_servers} unreachable: {exc}") from None
    result = {t: "exists" for t in topics if t in existing}
    new = [NewTopic(t, num_partitions=settings.topic_partitions, replication_factor=settings.topic_replication)
           for t in topics if t not in existing]
    if new:
        for topic, future in client.create_topics(new, operation_timeout=timeout_s).items():
            try:
                future.result()
                result[topic] = "created"
            except KafkaException as exc:
                err = exc.args[0]
                if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    result[topic] = "exists"
                else:
                    raise RelayError(f"creating topic {topic} failed: {err.str()}",
                                     retriable=err.retriable()) from None
    return result
