"""Declared topics and the client settings every producer/consumer of ours shares.

``outbox.event.<type>`` topics are created with the declared partitions/replication (broker
auto-creation is off). Creating a topic that exists is a no-op; its partition count is never
changed (adding partitions would move aggregates and break partition-local dedup).

Size: every topic we declare accepts a record of ``Settings.max_record_bytes`` (an event of
``RELAY_MAX_EVENT_BYTES`` plus headers and framing), and so do our producers; an existing topic
whose ``max.message.bytes`` is lower is raised to it (never lowered), so raising the setting and
running ``relay topics apply`` lets larger events through every hop.
"""

from __future__ import annotations

import time
from typing import Mapping

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

from relay.config import Settings
from relay.errors import KafkaUnavailable, RelayError
from relay.headers import EVENT_TOPIC_PREFIX, PARTITIONER, event_topic
from relay.kafka_access import LoginWatch, denied, is_denied


def producer_config(settings: Settings, **extra: object) -> dict:
    """Idempotent producer placing keys exactly where Java clients (Debezium) do."""
    return {
        **client_config(settings),
        "partitioner": PARTITIONER,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        # an event of max_event_bytes with its headers fits; the topics accept as much (apply_topics)
        "message.max.bytes": settings.max_record_bytes,
        **extra,
    }


def client_config(settings: Settings) -> dict:
    """What every confluent-kafka client of ours shares: the brokers, how it connects to them
    (relay.kafka_security: TLS, SASL), and librdkafka's logs through our logging (rate-limited,
    relay.kafka_logs) instead of hundreds of stderr lines in an outage."""
    from relay.kafka_logs import kafka_logger
    from relay.kafka_security import librdkafka

    return {"bootstrap.servers": settings.bootstrap_servers, "logger": kafka_logger(), "error_cb": LoginWatch(),
            **librdkafka(settings)}


def admin(settings: Settings) -> AdminClient:
    """An admin client whose ``login_watch`` tells whether Kafka refused its login."""
    conf = client_config(settings)
    client = AdminClient(conf)
    client.login_watch = conf["error_cb"]  # type: ignore[attr-defined]
    return client


def check_login(settings: Settings, client: object) -> None:
    """KafkaAccessDenied if ``client`` (an admin client from :func:`admin`) saw its login
    refused; serves its callbacks first. Other clients: nothing is checked."""

    poll = getattr(client, "poll", None)
    if poll is not None:
        from relay.kafka_logs import kafka_logger

        logger = kafka_logger()
        was, logger.disabled = logger.disabled, True  # what the poll serves: the caller says it in one line
        try:
            poll(0)  # librdkafka reports a refused login only through the error callback
        finally:
            logger.disabled = was
    watch = getattr(client, "login_watch", None)
    if isinstance(watch, LoginWatch):
        watch.check(settings)


def declared_topics(settings: Settings) -> list[str]:
    return [event_topic(t) for t in settings.aggregate_types]


def topic_names(settings: Settings, client: AdminClient | None = None, timeout_s: float = 4) -> set[str]:
    """Every topic of the cluster; KafkaUnavailable within ``timeout_s`` (at most 4 s) if nobody answers."""
    client = client or admin(settings)
    try:
        return set(client.list_topics(timeout=min(timeout_s, 4)).topics)
    except KafkaException as exc:
        check_login(settings, client)
        raise KafkaUnavailable(f"Kafka at {settings.bootstrap_servers} unreachable: {exc}") from None


def existing_outbox_topics(settings: Settings, timeout_s: float = 10) -> list[str]:
    """Every ``outbox.event.*`` topic in the cluster (Debezium creates one per aggregate type it
    meets, with its retry stages and .dlq made by workers): all must carry max_record_bytes."""
    return sorted(t for t in topic_names(settings, timeout_s=timeout_s) if t.startswith(EVENT_TOPIC_PREFIX))


MAX_MESSAGE_BYTES = "max.message.bytes"
DESCRIBE_RETRY_S = 0.2


def apply_topics(settings: Settings, topics: list[str] | None = None, timeout_s: float = 30,
                 max_message_bytes: int | None = None,
                 configs: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, str]:
    """Create missing topics (with ``configs[topic]`` as well, e.g. a changelog's compaction),
    raise a too-low ``max.message.bytes`` of existing ones; returns
    {topic: "created" | "exists" | "limit raised"}."""
    topics = declared_topics(settings) if topics is None else topics
    client = admin(settings)
    existing = topic_names(settings, client, timeout_s)
    result = {t: "exists" for t in topics if t in existing}
    needed = max_message_bytes or settings.max_record_bytes
    limit = str(needed)
    new = [NewTopic(t, num_partitions=settings.topic_partitions, replication_factor=settings.topic_replication,
                    config={MAX_MESSAGE_BYTES: limit, **(configs or {}).get(t, {})})
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
                elif is_denied(err.code()):
                    raise denied(settings, err.code(), topic, "create", err.str()) from None
                else:
                    raise RelayError(f"creating topic {topic} failed: {err.str()}",
                                     retriable=err.retriable()) from None
    for topic in _too_small(client, [t for t in topics if result[t] == "exists"], needed, timeout_s, settings):
        _raise_limit(client, topic, limit, timeout_s)
        result[topic] = "limit raised"
    return result


def topic_limits(client: AdminClient, topics: list[str], timeout_s: float = 10,
                 settings: Settings | None = None) -> dict[str, int]:
    """Each topic's effective ``max.message.bytes`` (topic override or broker default).

    A topic that another worker has just created (ours got TOPIC_ALREADY_EXISTS) can be unknown
    to the broker answering for a moment: asked again until ``timeout_s``. Two workers of one
    consumer starting together made the second exit here."""
    limits: dict[str, int] = {}
    pending, deadline = list(topics), time.monotonic() + timeout_s
    while pending:
        futures = client.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, t) for t in pending],
                                          request_timeout=timeout_s)
        pending = []
        for resource, future in futures.items():
            try:
                entries = future.result()
            except KafkaException as exc:
                err = exc.args[0]
                if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART and time.monotonic() < deadline:
                    pending.append(resource.name)
                    continue
                if settings is not None and is_denied(err.code()):
                    raise denied(settings, err.code(), resource.name, "describe the configs of",
                                 err.str()) from None
                raise RelayError(f"describing topic {resource.name} failed: {err.str()}",
                                 retriable=err.retriable()) from None
            limits[resource.name] = int(entries[MAX_MESSAGE_BYTES].value)
        if pending:
            time.sleep(DESCRIBE_RETRY_S)
    return limits


def _too_small(client: AdminClient, topics: list[str], needed: int, timeout_s: float,
               settings: Settings) -> list[str]:
    return [t for t, have in topic_limits(client, topics, timeout_s, settings).items() if have < needed]


def _raise_limit(client: AdminClient, topic: str, limit: str, timeout_s: float) -> None:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry(MAX_MESSAGE_BYTES, limit, incremental_operation=AlterConfigOpType.SET)])
    for future in client.incremental_alter_configs([resource], request_timeout=timeout_s).values():
        try:
            future.result()
        except KafkaException as exc:
            raise RelayError(f"raising {MAX_MESSAGE_BYTES} of topic {topic} to {limit} failed: "
                             f"{exc.args[0].str()}", retriable=exc.args[0].retriable()) from None
