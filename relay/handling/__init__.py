"""Consumer-side handling: event decoding, inbox dedup (retry and DLQ build on these)."""

from relay.handling.event import Event, decode
from relay.handling.idempotency import Inbox

__all__ = ["Event", "decode", "Inbox"]
