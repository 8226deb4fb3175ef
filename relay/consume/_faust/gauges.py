"""Consumer gauges that cost more than a counter, set by a 1 s app timer rather than per record
(so they are also right when no records flow), and a stall warning.

- parked keys: counting walks the parking table;
- lag per assigned partition: the records the agent has not taken yet (:func:`records_behind`),
  so a partition the agent never got a record of shows its backlog too. Offsets are not records:
  an exactly-once topic (Debezium's) ends in a transaction marker, so high watermark - next
  expected offset stayed 1 on every caught-up partition; the consumer's fetch position (past the
  markers it skipped) and the last record Faust handed over (:class:`Delivered`) tell them apart;
- a source partition whose expected offset has not moved for ``stall_s`` while more than one
  record waits is logged once as stalled (one offset of lag is the trailing transaction marker of
  an EOS topic). Seen causes: the circuit breaker is open, a handler does not return, or
  faust-streaming leaving a partition unconsumed after two workers joined at once (relay bench
  scaling); a restart of the worker resumes it from the committed offset.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust

from relay.consume._faust import compat
from relay.handling.continuity import Continuity
from relay.handling.parking import Parking
from relay.metrics import ConsumerMetrics

log = logging.getLogger("relay.consumer")


def records_behind(high: int, expected: int, position: int | None, delivered: int | None) -> int:
    """Records of a partition the agent has not taken yet, from offsets:

    ``high`` the high watermark (next offset to be written), ``expected`` the next offset the agent
    expects (relay.handling.continuity), ``position`` the consumer's fetch position (next offset
    to fetch; it moves past transaction markers without handing them over) and ``delivered`` the
    offset of the last record Faust handed to the agent's stream (None: unknown).

    Offsets from ``position`` on are not fetched yet: all counted (records or markers, nobody
    knows). Below it, only the handed-over records from ``expected`` to ``delivered`` wait (in the
    stream buffer, or a retry-stage record waiting for its due time); the rest of
    ``[expected, position)`` are markers the fetcher skipped. Caught up on an exactly-once topic:
    0, not 1. Without a position (none fetched yet) it is ``high - expected``."""
    if position is None or position < expected:
        return max(0, high - expected)
    waiting = delivered + 1 - expected if delivered is not None and expected <= delivered < position else 0
    return max(0, high - position) + waiting


class Delivered(faust.Sensor):
    """The offset of the last record Faust handed to a stream, per partition of ``topics``."""

    def __init__(self, topics: set[str]) -> None:
        super().__init__()
        self.topics = topics
        self.offsets: dict[tuple[str, int], int] = {}

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        if tp.topic in self.topics:
            self.offsets[(tp.topic, tp.partition)] = offset


class Gauges:
    def __init__(self, app: Any, metrics: ConsumerMetrics, parking: Parking, continuity: Continuity, topic: str,
                 stall_s: float = 60.0, delivered: Delivered | None = None) -> None:
        """``delivered``: added to the app's sensors by the caller (without it, the lag of a
        caught-up exactly-once partition can read 1)."""
        self.app, self.m, self.parking, self.continuity = app, metrics, parking, continuity
        self.topic, self.stall_s, self.delivered = topic, stall_s, delivered
        self._since: dict[tuple[str, int], tuple[int, float]] = {}  # tp -> (expected offset, since when)
        self._warned: set[tuple[str, int]] = set()

    async def refresh(self) -> None:
        """Never raises: a timer that raises crashes the worker (e.g. asking the high watermark
        of a partition that a rebalance just took away)."""
        try:
            self.m.parked_keys.set(self.parking.parked_keys())
            now, seen = time.monotonic(), set()
            for tp in self.app.consumer.assignment():
                key = (tp.topic, tp.partition)
                expected = self.continuity.next_offset(key)
                high = self.app.consumer.highwater(tp) if expected is not None else None
                if expected is None or high is None:
                    continue
                lag = records_behind(high, expected, compat.fetch_position(self.app.consumer, tp),
                                     self.delivered.offsets.get(key) if self.delivered else None)
                self.m.lag.labels(tp.topic, str(tp.partition)).set(lag)
                if tp.topic == self.topic:
                    seen.add(key)
                    self.watch(key, expected, lag, now)
            for key in set(self._since) - seen:  # revoked
                self._since.pop(key, None)
                self._warned.discard(key)
        except Exception as exc:  # noqa: BLE001 - a gauge is not worth a crash
            log.debug("gauges not refreshed: %s", exc)

    def watch(self, key: tuple[str, int], expected: int, lag: int, now: float) -> bool:
        """Log once when ``key`` has waited ``stall_s`` with lag > 1 and no progress; True then."""
        last = self._since.get(key)
        if last is None or last[0] != expected or lag <= 1:  # 1: a trailing marker, if no position
            self._since[key] = (expected, now)
            self._warned.discard(key)
            return False
        if now - last[1] < self.stall_s or key in self._warned:
            return False
        self._warned.add(key)
        log.warning("%s[%d]: %d records waiting and none taken for %.0f s (circuit open, a handler that does "
                    "not return, or a partition faust-streaming left unconsumed after a rebalance: restart the "
                    "worker; it resumes from the committed offset)", key[0], key[1], lag, now - last[1])
        return True
