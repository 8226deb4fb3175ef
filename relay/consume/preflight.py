"""What a worker checks before it starts: every dependency it cannot work without answers.

Why: a worker started against a closed Kafka port printed 576 librdkafka lines and gave up after
31.6 s; one whose handler had a wrong database password started "fine" and failed every event into
the retry ladder. :func:`check` turns both into one line of our error tree within a few seconds.

Contract (the probes and their messages are relay.deps'):
- Kafka: the brokers answer a metadata request within ``timeout_s``, else
  :class:`~relay.errors.KafkaUnavailable` ``Kafka at <bootstrap> unreachable: <cause>``
  (retriable), and no librdkafka line.
- Postgres: for each DSN the app declared (:func:`needs_database`; the worker declares it for a
  consumer that uses Postgres), a connection and ``SELECT 1`` within ``timeout_s``, and for a
  Postgres-inbox subscription the ``processed_events`` table (else ConfigError: run migrate),
  else :class:`~relay.errors.DatabaseError` naming the DSN with ``****`` for the password and
  psycopg's reason: refused credentials (``password authentication failed``, not retriable),
  ``unreachable`` (retriable), or the server's refusal.
- Kafka access: the app's consumer group may be described (its ACL), else
  :class:`~relay.errors.KafkaAccessDenied` naming the principal and the group (aiokafka under
  Faust retries a refused group silently; the kafka engine would say it at its first poll).
- no password appears in any message; nothing is checked at import time.
"""

from __future__ import annotations

from typing import Any

import psycopg

from relay.config import Settings
from relay.deps import connect_postgres, postgres_error, probe_kafka

TIMEOUT_S = 3
DATABASES = "relay_databases"  # app attribute: DSNs the app's handlers connect to


def needs_database(app: Any, dsn: str) -> None:
    """Declare that ``app`` cannot work without Postgres at ``dsn`` (checked before it starts)."""
    declared = getattr(app, DATABASES, [])
    if dsn not in declared:
        setattr(app, DATABASES, [*declared, dsn])


def databases(app: Any) -> list[str]:
    return list(getattr(app, DATABASES, []))


def check(settings: Settings, app: Any, timeout_s: int = TIMEOUT_S) -> None:
    """Kafka, then every declared database; raises the first failure (see the module contract)."""
    error = probe_kafka(settings, timeout_s)
    if error is not None:
        raise error
    runtime = getattr(app, "relay_runtime", None)
    if runtime is not None:
        check_group(settings, runtime.consumer.name, timeout_s)
    inbox = runtime is not None and any(s.inbox == "postgres" for s in runtime.consumer.subscriptions)
    for dsn in databases(app):
        check_postgres(dsn, timeout_s, inbox_table=inbox)


def check_group(settings: Settings, group: str, timeout_s: float = TIMEOUT_S) -> None:
    """KafkaAccessDenied if Kafka refuses to describe ``group`` to us (no ACL on it)."""
    from confluent_kafka import KafkaException

    from relay.kafka_access import denied, is_denied
    from relay.topics import admin

    client = admin(settings)
    try:
        client.describe_consumer_groups([group], request_timeout=timeout_s)[group].result()
    except KafkaException as exc:
        err = exc.args[0]
        if is_denied(err.code()):
            raise denied(settings, err.code(), group, "join", err.str()) from None
        # anything else (a slow coordinator): the engine's own retries and errors decide


def check_postgres(dsn: str, timeout_s: int = TIMEOUT_S, *, inbox_table: bool = False) -> None:
    """``SELECT 1`` answers; with ``inbox_table``, ``processed_events`` exists and takes inserts
    (ConfigError naming `relay outbox migrate` otherwise)."""
    with connect_postgres(dsn, timeout_s=timeout_s) as conn:
        try:
            conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise postgres_error(exc, dsn) from None
        if inbox_table:
            from relay.consume.pg import check_inbox_table

            check_inbox_table(conn)
