"""outbox-relay: transactional outbox -> Debezium/Kafka -> idempotent consumers.

Public API (everything else is internal and may change):
- ``relay.outbox.write(conn, aggregatetype=..., aggregateid=..., type=..., payload=...)`` and its
  batch and async twins (``relay.outbox``);
- ``relay.load_settings()`` / ``relay.Settings``: every setting, from ``RELAY_*`` variables;
- the error tree, also importable from here: ``RelayError`` and its subclasses, each with
  ``retriable`` (True when the same call may succeed later unchanged).

Importing ``relay`` does nothing but define names (no connections, no settings read).
"""

from relay.config import Settings, load_settings
from relay.errors import (
    ConfigError,
    ConnectError,
    DatabaseError,
    DecodeError,
    IdempotencyConflict,
    InvalidEvent,
    KafkaUnavailable,
    RelayError,
    StackError,
)

__all__ = [
    "Settings", "load_settings",
    "RelayError", "ConfigError", "InvalidEvent", "IdempotencyConflict", "DatabaseError", "KafkaUnavailable",
    "ConnectError", "DecodeError", "StackError",
]
