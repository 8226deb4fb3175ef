"""Consuming routed outbox events: see :class:`relay.Consumer`."""
