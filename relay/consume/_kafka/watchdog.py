"""A worker must never hang silently: this notices a blocking call that did not return in time.

The kafka engine blocks in two places it does not control: librdkafka's ``poll``/``consume``
(which also runs the rebalance callbacks) and the event loop's own callbacks. Each is bounded by
design (restore, revocation and commit waits all have limits), so one that overruns its limit
by far is a bug, not a slow broker. Then the worker logs where every thread is, stops (a stopped
worker re-reads from its last commit after a restart: nothing is lost), and if even stopping
hangs, the process exits with status 1 so that its supervisor starts a fresh one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from typing import Callable, Iterator

log = logging.getLogger("relay.consumer")
CHECK_S = 1.0


def thread_stacks() -> str:
    """Where every thread of the process is, innermost call last."""
    names = {t.ident: t.name for t in threading.enumerate()}
    parts = []
    for ident, frame in sys._current_frames().items():
        stack = "".join(traceback.format_stack(frame, limit=12))
        parts.append(f"thread {names.get(ident, ident)}:\n{stack}")
    return "\n".join(parts)


class Watchdog:
    """Watches named blocking calls and the event loop from a daemon thread (each second it asks
    the loop to run a beat; a loop that runs none for ``loop_limit_s`` is stuck).

    ``stop(reason)`` is called (from the watchdog thread) once, when a call or the loop is stuck;
    ``exit_grace_s`` later, if the process still runs, it exits with status 1."""

    def __init__(self, stop: Callable[[BaseException], None], *, loop_limit_s: float, exit_grace_s: float,
                 exit: Callable[[int], None] = os._exit) -> None:
        self._stop, self._exit = stop, exit
        self.loop_limit_s, self.exit_grace_s = loop_limit_s, exit_grace_s
        self._calls: dict[int, tuple[str, float, float]] = {}  # id -> (what, began, limit)
        self._beat = time.monotonic()
        self._tripped: float | None = None
        self._done = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop, self._beat = loop, time.monotonic()
        threading.Thread(target=self._run, name="relay-watchdog", daemon=True).start()

    def close(self) -> None:
        self._done.set()

    def beat(self) -> None:
        """The event loop is alive (runs on the loop)."""
        self._beat = time.monotonic()

    @contextmanager
    def watching(self, what: str, limit_s: float) -> Iterator[None]:
        key = threading.get_ident()
        self._calls[key] = (what, time.monotonic(), limit_s)
        try:
            yield
        finally:
            self._calls.pop(key, None)

    def check(self, now: float) -> None:
        """One look (the watchdog thread calls it every second)."""
        if self._tripped is not None:
            if now - self._tripped > self.exit_grace_s:
                log.critical("the worker did not stop within %.0f s of being stuck; exiting with status 1",
                             self.exit_grace_s)
                logging.shutdown()
                self._exit(1)
            return
        stuck = [f"{what} has not returned for {now - began:.0f} s (its limit is {limit:.0f} s)"
                 for what, began, limit in list(self._calls.values()) if now - began > limit]
        if now - self._beat > self.loop_limit_s:
            stuck.append(f"the event loop has not run for {now - self._beat:.0f} s")
        if stuck:
            self._tripped = now
            log.critical("stuck: %s; stopping the worker (a restart re-reads from the last commit, nothing is "
                         "lost). Threads:\n%s", "; ".join(stuck), thread_stacks())
            self._stop(TimeoutError("; ".join(stuck)))

    def _run(self) -> None:
        while not self._done.wait(CHECK_S):
            self.check(time.monotonic())
            try:
                if self._loop is not None:
                    self._loop.call_soon_threadsafe(self.beat)
            except RuntimeError:  # the loop is closed: the worker is gone
                return
