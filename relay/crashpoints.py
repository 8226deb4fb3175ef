"""Crash points: the windows of the side-effects article, as hooks in the code paths that a test
arms with ``RELAY_CRASH_AT=<point>`` to SIGKILL the process exactly there. Off by default; an
unknown name stops the process at its first hook with the list of points, rather than never
firing.

    before_command_commit                 a participant's transaction, just before COMMIT
    after_command_commit_before_response  a consumer's transaction committed, its offset not yet
    after_external_send_before_record     an effect's call returned, its record not yet written
    after_outbox_write_before_publish     the polling relay read committed rows, sent none yet
    after_publish_before_mark_sent        the polling relay's rows are in Kafka, not yet marked

Reading the variable happens once, at the first hook; a hook that is not armed costs a compare.
"""

from __future__ import annotations

import logging
import os
import signal
from enum import StrEnum

from relay.errors import ConfigError

ENV = "RELAY_CRASH_AT"
log = logging.getLogger("relay.crash")


class CrashPoint(StrEnum):
    BEFORE_COMMAND_COMMIT = "before_command_commit"
    AFTER_COMMAND_COMMIT_BEFORE_RESPONSE = "after_command_commit_before_response"
    AFTER_EXTERNAL_SEND_BEFORE_RECORD = "after_external_send_before_record"
    AFTER_OUTBOX_WRITE_BEFORE_PUBLISH = "after_outbox_write_before_publish"
    AFTER_PUBLISH_BEFORE_MARK_SENT = "after_publish_before_mark_sent"


_UNREAD = object()
_armed: object = _UNREAD


def armed() -> CrashPoint | None:
    global _armed
    if _armed is _UNREAD:
        raw = os.environ.get(ENV, "").strip()
        try:
            _armed = CrashPoint(raw) if raw else None
        except ValueError:
            raise ConfigError(f"{ENV} = {raw!r}; expected one of {[p.value for p in CrashPoint]}") from None
    return _armed if isinstance(_armed, CrashPoint) else None


def reach(point: CrashPoint) -> None:
    """SIGKILL this process if ``RELAY_CRASH_AT`` names ``point``."""
    if armed() is point:
        log.warning("crash point %s reached: SIGKILL (%s)", point.value, ENV)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)
