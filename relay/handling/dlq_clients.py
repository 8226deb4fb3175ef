"""The Kafka clients of the dead-letter tools: quiet logs, a fast reachability check, their configs.

Guarantee: a dead-letter command against an unreachable Kafka fails after ``PROBE_TIMEOUT_S`` with
one ``KafkaUnavailable`` line (no librdkafka log flood: every client is built on
:func:`relay.topics.client_config`, which logs through our rate-limited logger).
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaException

from relay.config import Settings
from relay.errors import KafkaUnavailable
from relay.topics import client_config, producer_config

PROBE_TIMEOUT_S = 3.0


def unreachable(settings: Settings, exc: BaseException, note: str = "") -> KafkaUnavailable:
    """One line: which Kafka, and librdkafka's reason."""
    detail = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
    return KafkaUnavailable(f"Kafka at {settings.bootstrap_servers} unreachable{f' ({note})' if note else ''}: "
                            f"{detail}")


def list_topic_names(settings: Settings, timeout_s: float = PROBE_TIMEOUT_S) -> set[str]:
    """Every topic of the cluster; raises KafkaUnavailable after ``timeout_s`` if nobody answers."""
    from relay.topics import admin, check_login

    client = admin(settings)
    try:
        return set(client.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        check_login(settings, client)  # a refused login is not "unreachable"
        raise unreachable(settings, exc, f"no answer within {timeout_s:g} s") from None


def reader_config(settings: Settings, group: str) -> dict[str, Any]:
    """A consumer that never commits on its own and sees committed records only."""
    return {**client_config(settings), "group.id": group, "enable.auto.commit": False,
            "isolation.level": "read_committed"}


def redrive_producer_config(settings: Settings, transactional_id: str) -> dict[str, Any]:
    """Transactional producer: replayed records and the redrive position commit together.

    A short transaction timeout: a redrive killed mid-transaction holds back read_committed readers
    of the source partitions only until the broker aborts it (or the next redrive fences it).
    """
    return producer_config(settings, **{"transactional.id": transactional_id, "transaction.timeout.ms": 10_000})
