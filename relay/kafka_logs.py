"""Third-party Kafka client logs (librdkafka through confluent-kafka, aiokafka, Faust/mode)
routed through Python logging at WARNING and rate-limited by message shape.

Why: while a broker is away the clients log every reconnect attempt. A worker logged 3,352 lines
in a 35 s outage (aiokafka: 1,335 x ``Unable connect to node with id 1``), and librdkafka printed
576 ``%3|...|FAIL|... Connection refused`` lines straight to stderr before one useful error.

Guarantees:
- :class:`RateLimit` lets the first record of a *shape* through, then at most one per
  ``window_s`` seconds; the next one that passes carries the number suppressed in between
  (``(+N similar suppressed in the last 20 s)``). A shape is the logger, the level and the
  message with every number replaced by ``#`` (node ids, ports, offsets, timings, errnos), so a
  flood of one problem is one line per window, and distinct problems each get their own line.
  Thread-safe (librdkafka logs reach Python from client threads); it remembers at most
  ``max_shapes`` shapes (the oldest is forgotten first).
- :func:`kafka_logger` is the logger to pass as confluent-kafka's ``"logger"`` config key:
  librdkafka then logs through Python logging (only when the client is polled) instead of
  writing to stderr.
- :func:`quiet_kafka_clients` puts the same filter on the aiokafka/Faust/mode loggers that
  exist when it is called (a filter on a logger does not see its children's records, so each one
  gets it) and sets ``aiokafka`` to WARNING. Call it after those packages are imported.
Nothing happens at import time.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

WINDOW_S = 20.0
THIRD_PARTY = ("aiokafka", "faust", "mode")
LIBRDKAFKA_LOGGER = "relay.kafka.librdkafka"

_NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\d+")
_SHAPE_CHARS = 160


def shape(record: logging.LogRecord) -> tuple[str, int, str]:
    """What makes two records "the same line": logger, level, message with numbers as ``#``."""
    try:
        text = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string: fall back to the template
        text = str(record.msg)
    return record.name, record.levelno, _NUMBERS.sub("#", text)[:_SHAPE_CHARS]


class RateLimit(logging.Filter):
    """At most one record per shape per ``window_s``; see the module docstring."""

    def __init__(self, window_s: float = WINDOW_S, *, max_shapes: int = 512,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window_s, self.max_shapes, self.clock = window_s, max_shapes, clock
        self._lock = threading.Lock()
        self._shapes: OrderedDict[tuple[str, int, str], list[float]] = OrderedDict()  # -> [passed at, suppressed]

    def filter(self, record: logging.LogRecord) -> bool:
        key, now = shape(record), self.clock()
        with self._lock:
            seen = self._shapes.get(key)
            if seen is not None and now - seen[0] < self.window_s:
                seen[1] += 1
                return False
            suppressed = int(seen[1]) if seen is not None else 0
            self._shapes[key] = [now, 0]
            self._shapes.move_to_end(key)
            while len(self._shapes) > self.max_shapes:
                self._shapes.popitem(last=False)
        if suppressed:
            record.msg = f"{record.getMessage()} (+{suppressed} similar suppressed in the last {self.window_s:.0f} s)"
            record.args = ()  # formatted already; a tuple, as Faust's (mode's) formatter expects
        return True


@functools.cache
def shared_filter() -> RateLimit:
    """The one filter every Kafka client logger shares (created on first use)."""
    return RateLimit()


def _install(logger: logging.Logger, limit: RateLimit) -> None:
    if limit not in logger.filters:
        logger.addFilter(limit)


def kafka_logger() -> logging.Logger:
    """The logger for confluent-kafka's ``"logger"`` config key: WARNING and above, rate-limited."""
    logger = logging.getLogger(LIBRDKAFKA_LOGGER)
    logger.setLevel(logging.WARNING)
    _install(logger, shared_filter())
    return logger


def quiet_kafka_clients(prefixes: Iterable[str] = THIRD_PARTY, *, limit: RateLimit | None = None) -> RateLimit:
    """Rate-limit every existing logger named ``p`` or ``p.*`` for each prefix ``p``; aiokafka's
    below WARNING is dropped. Returns the filter (the shared one unless ``limit`` is given)."""
    limit = limit or shared_filter()
    prefixes = tuple(prefixes)
    names = [name for name in list(logging.Logger.manager.loggerDict)
             if any(name == p or name.startswith(p + ".") for p in prefixes)]
    for name in {*prefixes, *names}:
        _install(logging.getLogger(name), limit)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    return limit
