"""Kafka Connect: connector templates and the REST client."""

from relay.connect.client import ApplyResult, ConnectClient
from relay.connect.render import render_outbox_connector

__all__ = ["ConnectClient", "ApplyResult", "render_outbox_connector"]
