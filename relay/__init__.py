"""outbox-relay: transactional outbox -> Debezium/Kafka -> idempotent consumers.

Public API (everything else is internal and may change):
- ``relay.outbox.write(conn, aggregatetype=..., aggregateid=..., type=..., payload=...)`` and its
  batch and async twins (``relay.outbox``);
- ``relay.load_settings()`` / ``relay.Settings``: every setting, from ``RELAY_*`` variables;
- consuming: ``relay.Consumer`` (``@consumer.subscribe``, ``on_startup`` / ``on_shutdown``), the
  ``Event`` a handler receives, its ``Context`` (``inbox="table"``) or ``Tx`` (``inbox="postgres"``),
  and the handler's control exceptions ``Retry(delay=...)`` and ``Reject(reason)``; ``relay worker``
  runs a consumer, ``relay.testing.Harness`` tests one in memory;
- sagas (``relay.saga``: definitions, ``start``, the coordinator, participants with
  ``@consumer.participant`` and ``@consumer.effect``) and their side-effect policies
  (``relay.policy``, the gate ``relay.saga.gate.Gate``);
- the error tree, also importable from here: ``RelayError`` and its subclasses, each with
  ``retriable`` (True when the same call may succeed later unchanged); a participant raises
  ``StepFailed`` (``StaleVersion`` for optimistic concurrency) or ``EffectUnknown``.

Importing ``relay`` does nothing but define names (no connections, no settings read).
"""

from relay.config import Settings, load_settings
from relay.consume.consumer import Consumer, Context, Options
from relay.consume.pg import Tx
from relay.errors import (
    ApprovalRefused,
    ConfigError,
    ConnectError,
    DatabaseError,
    DecodeError,
    EffectUnknown,
    IdempotencyConflict,
    InvalidEvent,
    KafkaUnavailable,
    MissingExtra,
    PolicyError,
    Reject,
    RelayError,
    Retry,
    SagaDefinitionError,
    StackError,
    StaleVersion,
    StepFailed,
)
from relay.handling.event import Event

__all__ = [
    "Settings", "load_settings",
    "Consumer", "Context", "Options", "Event", "Tx", "Retry", "Reject",
    "RelayError", "ConfigError", "InvalidEvent", "IdempotencyConflict", "DatabaseError", "KafkaUnavailable",
    "ConnectError", "DecodeError", "StackError", "MissingExtra",
    "StepFailed", "StaleVersion", "EffectUnknown", "ApprovalRefused", "SagaDefinitionError", "PolicyError",
]
