"""Calls to the confluent-kafka consumer from the event loop, made by the thread that polls it.

Why: a consumer call made on the event loop while the polling thread sat in a rebalance callback
(which waits for the loop) blocked the loop: ``position()`` during an assignment lost to a broker
outage hung until the callback gave up, 70 s later (reproduced in the broker-outage test, about
one run in three). So the loop never calls the consumer itself. It queues the call here; the
polling thread runs what is queued before each poll and, while it waits for the loop inside a
rebalance callback, between its waits. When nothing polls (before the first fetch, at shutdown),
calls run on a worker thread as before.
"""

from __future__ import annotations

import asyncio
import logging
import queue
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, TypeVar

log = logging.getLogger("relay.consumer")
T = TypeVar("T")


class Owner:
    def __init__(self, threads: ThreadPoolExecutor) -> None:
        self._threads = threads
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any] | None]] = queue.SimpleQueue()
        self.polling = False  # a thread polls the consumer and serves the queue

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the polling thread (or a worker thread when none polls); its result."""
        if not self.polling:
            return await asyncio.get_running_loop().run_in_executor(self._threads, fn)
        done: Future[T] = Future()
        self._calls.put((fn, done))
        return await asyncio.wrap_future(done)

    def tell(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the polling thread soon (fire and forget; errors are logged)."""
        self._calls.put((fn, None))

    def serve(self) -> None:
        """Run what is queued (the polling thread, or once at shutdown)."""
        while True:
            try:
                fn, done = self._calls.get_nowait()
            except queue.Empty:
                return
            if done is not None and not done.set_running_or_notify_cancel():
                continue
            try:
                result = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                if done is not None:
                    done.set_exception(exc)
                else:
                    log.debug("consumer call %r failed: %s", fn, exc)
            else:
                if done is not None:
                    done.set_result(result)
