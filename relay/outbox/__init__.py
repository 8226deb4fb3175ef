"""The transactional outbox: schema (versioned migrations) and the writer API."""

from relay.outbox.schema import ensure_cdc_access, migrate
from relay.outbox.writer import write

__all__ = ["write", "migrate", "ensure_cdc_access"]
