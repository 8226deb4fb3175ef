"""outbox-relay: transactional outbox -> Debezium/Kafka -> idempotent consumers.

Public API (everything else is internal and may change):
- ``relay.outbox.write(conn, aggregatetype=..., aggregateid=..., type=..., payload=...)``
- ``relay.load_settings()`` / ``relay.Settings``
- the error tree in ``relay.errors`` (``RelayError`` and subclasses, each with ``retriable``)
"""

from relay.config import Settings, load_settings
from relay.errors import ConfigError, InvalidEvent, RelayError

__all__ = ["Settings", "load_settings", "RelayError", "ConfigError", "InvalidEvent"]
