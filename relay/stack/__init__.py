"""The native dev stack (Postgres, Kafka KRaft, Kafka Connect + Debezium), no Docker needed."""

from relay.stack.manager import Stack

__all__ = ["Stack"]
