"""What a worker checks before it starts: every dependency it cannot work without answers.

Why: a worker started against a closed Kafka port printed 576 librdkafka lines and gave up after
31.6 s; one whose handler had a wrong database password started "fine" and failed every event into
the retry ladder. :func:`check` turns both into one line of our error tree within a few seconds.

Contract:
- Kafka: the brokers answer a metadata request within ``timeout_s``, else
  :class:`~relay.errors.KafkaUnavailable` ``Kafka at <bootstrap> unreachable: <cause>``
  (retriable). librdkafka's own lines go to :func:`relay.kafka_logs.kafka_logger` and are not
  served: the error is the one line.
- Postgres: for each DSN the app declared (:func:`needs_database`; ``add_idempotent_consumer``
  declares it for a ``pg_idempotent`` handler), a connection and ``SELECT 1`` within ``timeout_s``,
  else :class:`~relay.errors.DatabaseError` naming the DSN with ``****`` for the password and
  psycopg's reason: ``authentication failed`` (not retriable: a credential must change),
  ``unreachable`` (retriable) or the server's refusal (``database ... does not exist``, ...).
- no password appears in any message; nothing is checked at import time.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from relay.config import Settings
from relay.errors import DatabaseError, KafkaUnavailable
from relay.kafka_logs import kafka_logger
from relay.secrets import mask_dsn

TIMEOUT_S = 3.0
DATABASES = "relay_databases"  # app attribute: DSNs the app's handlers connect to


def needs_database(app: Any, dsn: str) -> None:
    """Declare that ``app`` cannot work without Postgres at ``dsn`` (checked before it starts)."""
    declared = getattr(app, DATABASES, [])
    if dsn not in declared:
        setattr(app, DATABASES, [*declared, dsn])


def databases(app: Any) -> list[str]:
    return list(getattr(app, DATABASES, []))


def check(settings: Settings, app: Any, timeout_s: float = TIMEOUT_S) -> None:
    """Kafka, then every declared database; raises the first failure (see the module contract)."""
    check_kafka(settings.bootstrap_servers, timeout_s)
    for dsn in databases(app):
        check_postgres(dsn, timeout_s)


def check_kafka(bootstrap: str, timeout_s: float = TIMEOUT_S) -> None:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    ms = int(timeout_s * 1000)
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": kafka_logger(),  # (stubs omit "logger")
                              "socket.timeout.ms": ms, "socket.connection.setup.timeout.ms": ms}
    client = AdminClient(config)
    try:
        client.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise KafkaUnavailable(f"Kafka at {bootstrap} unreachable: {exc.args[0].str()}") from None


def check_postgres(dsn: str, timeout_s: float = TIMEOUT_S) -> None:
    try:
        with psycopg.connect(dsn, connect_timeout=max(1, round(timeout_s)), autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise postgres_error(exc, dsn) from None


def postgres_error(exc: psycopg.Error, dsn: str) -> DatabaseError:
    """psycopg's reason for not connecting, as one line that names ``dsn`` without its password."""
    text = " ".join(str(exc).split()).removeprefix("connection failed: ")
    text = text.replace(dsn, mask_dsn(dsn))
    where = mask_dsn(dsn)
    if "authentication failed" in text:
        return DatabaseError(f"Postgres at {where}: authentication failed ({text})", retriable=False)
    if "FATAL:" not in text and isinstance(exc, psycopg.OperationalError):
        return DatabaseError(f"Postgres at {where} unreachable: {text}", retriable=True)
    refused = re.search(r"does not exist|no pg_hba\.conf entry|permission denied", text)
    return DatabaseError(f"Postgres at {where} refused the connection: {text}", retriable=refused is None)
