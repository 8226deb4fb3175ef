"""Reaching our dependencies, failing fast and clearly: Postgres and Kafka failures become one
line of our error tree naming the dependency, its address (password shown as ``****``) and the
cause, within a few seconds, instead of a traceback or minutes of client retries.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from relay.config import Settings
from relay.errors import DatabaseError, KafkaUnavailable, RelayError
from relay.secrets import mask_dsn

CONNECT_TIMEOUT_S = 3


def postgres_error(exc: psycopg.Error, dsn: str) -> DatabaseError:
    """``exc`` from connecting with ``dsn`` as one clear line: refused credentials are not retriable."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    text = next((line for line in lines if "FATAL" in line), lines[0])
    where = mask_dsn(dsn)
    if "password authentication failed" in text or "role" in text and "does not exist" in text:
        return DatabaseError(f"Postgres refused the credentials in {where}: {text}", retriable=False)
    if isinstance(exc, psycopg.OperationalError):
        return DatabaseError(f"Postgres at {where} unreachable: {text}", retriable=True)
    return DatabaseError(f"Postgres at {where}: {text}", retriable=False)


def connect_postgres(dsn: str, *, autocommit: bool = True, timeout_s: int = CONNECT_TIMEOUT_S) -> psycopg.Connection:
    """A connection, or DatabaseError (see :func:`postgres_error`) within ``timeout_s``."""
    try:
        return psycopg.connect(dsn, autocommit=autocommit, connect_timeout=timeout_s)
    except psycopg.Error as exc:
        raise postgres_error(exc, dsn) from None


def quiet_kafka_config(settings: Settings, timeout_s: float) -> dict[str, Any]:
    """Client settings for a short probe: librdkafka logs to a logger of ours at ERROR only.
    (Any values: confluent-kafka's stubs admit only str/int/float/bool, but it takes a Logger.)"""
    from relay.kafka_security import librdkafka

    return {"bootstrap.servers": settings.bootstrap_servers, "socket.timeout.ms": int(timeout_s * 1000),
            "socket.connection.setup.timeout.ms": int(timeout_s * 1000),
            "logger": logging.getLogger("relay.kafka.probe"), "log_level": 0, **librdkafka(settings)}


def probe_kafka(settings: Settings, timeout_s: float = CONNECT_TIMEOUT_S) -> RelayError | None:
    """None when the brokers answer a metadata request within ``timeout_s``, else the error:
    KafkaAccessDenied when they refused our login, KafkaUnavailable when nobody answered."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from relay.kafka_access import LoginWatch, login_refused

    watch = LoginWatch(log=False)
    config: dict[str, Any] = {**quiet_kafka_config(settings, timeout_s), "error_cb": watch}
    client = AdminClient(config)
    try:
        client.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        client.poll(0)  # a refused login is only said to the error callback
        if watch.detail is not None:
            return login_refused(settings, watch.detail)
        return KafkaUnavailable(f"Kafka at {settings.bootstrap_servers} unreachable: {exc.args[0].str()}")
    return None
