"""An agent waiting on a record it took, without holding up shutdown or a rebalance.

Why: a retry-stage agent takes the head record of its stage and sleeps until the record's
``retry.due-at`` (up to the longest delay of the ladder: 10 min by default), and an open circuit
holds a taken record for up to 60 s. Faust counts a taken, unacked record as being processed, and
SIGTERM and every rebalance wait for it (``Consumer.wait_empty``): a worker took ~35 s to stop,
logging ``wait_empty: Waiting for tasks [... .retry.3 ...]``.

Contract of :meth:`Waits.away` (``wait`` is a coroutine that only sleeps):
- while ``wait`` runs the record is not one Faust waits for: it is taken out of the consumer's
  unacked set (private API, read through relay.consume._faust.compat.unacked_messages) and is never
  acked meanwhile, so its offset is not committed and nothing after it on its partition is taken
  (one agent per topic, FIFO). Stopped there, the worker leaves it in Kafka: after a restart it is
  read again and, never having been handled, handled once.
- True: the wait is over, the partition is still ours, the worker is not stopping and no
  rebalance is running; the record is tracked again, so shutdown waits for the handling that
  follows (as for any record).
- False: the partition was revoked meanwhile (rebalance): drop the record, neither handle nor ack
  it; whoever owns the partition next reads it from the committed offset. A revocation during the
  wait is noticed within ``poll_s``.
- while the worker stops it never returns (the agent is cancelled); cancellation propagates.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from relay.consume._faust import compat

TP = tuple[str, int]


class Waits:
    def __init__(self, app: Any, poll_s: float = 1.0) -> None:
        self.app, self.poll_s = app, poll_s
        self._revocations: dict[TP, int] = defaultdict(int)

        @app.on_partitions_revoked.connect
        async def on_revoked(_sender: Any, revoked: Any, **_kw: Any) -> None:
            for tp in revoked:
                self._revocations[(tp.topic, tp.partition)] += 1

        self._handler = on_revoked  # signals keep weak references

    async def away(self, message: Any, wait: Callable[[], Awaitable[None]]) -> bool:
        """Run ``wait()`` with ``message`` untracked; see the module contract."""
        tp = (message.topic, message.partition)
        revocations = self._revocations[tp]
        unacked = compat.unacked_messages(self.app.consumer)
        tracked = unacked is not None and message in unacked
        if unacked is not None and tracked:
            unacked.discard(message)
        task = asyncio.ensure_future(wait())
        try:
            while not task.done() or self._held():
                if self._revocations[tp] != revocations:
                    return False
                if task.done():
                    await asyncio.sleep(self.poll_s)
                else:
                    await asyncio.wait({task}, timeout=self.poll_s)
            task.result()
            if self._revocations[tp] != revocations:
                return False
        finally:
            task.cancel()
        if unacked is not None and tracked:
            unacked.add(message)
        return True

    def _held(self) -> bool:
        """The worker is stopping or rebalancing: take nothing now."""
        return bool(self.app.should_stop or getattr(self.app, "rebalancing", False))
