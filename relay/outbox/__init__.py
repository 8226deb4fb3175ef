"""The transactional outbox: schema (versioned migrations) and the writer API."""

from relay.outbox.schema import ensure_cdc_access, migrate
from relay.outbox.writer import OutboxEvent, WriteResult, awrite, awrite_many, write, write_many

__all__ = ["write", "write_many", "awrite", "awrite_many", "OutboxEvent", "WriteResult", "migrate",
           "ensure_cdc_access"]
