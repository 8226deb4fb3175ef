"""A consumer while it runs (engine-neutral): the lifecycle (Postgres pool, startup and shutdown
hooks, shared state) and the call of each subscription's handler.

Order at start: open the pool (when needed) and check that ``processed_events`` exists (it comes
from ``relay outbox migrate``), then the startup hooks in registration order. At stop: the
shutdown hooks in reverse order (each failure logged, the others still run), then the pool closes.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable

from relay.consume.batch import CURRENT, Batch
from relay.consume.consumer import Consumer, Context, Hook, InboxKind, Subscription
from relay.consume.pipeline import Invoke, OpenBatch
from relay.handling.event import Event

if TYPE_CHECKING:
    from relay.config import Settings

log = logging.getLogger("relay.consumer")
POOL_OPEN_TIMEOUT_S = 10.0


class Runtime:
    """The running side of a :class:`Consumer`: one per worker process (or harness)."""

    def __init__(self, consumer: Consumer, settings: "Settings", *, pool: Any = None, open_pool: bool = True,
                 registry: Any = None) -> None:
        self.consumer, self.settings, self.open_pool, self.registry = consumer, settings, open_pool, registry
        self.state: dict[str, Any] = {}
        self.pool = pool  # given: owned by the caller (tests); None: opened here when needed
        self._owns_pool = False
        self.started = False

    def context(self, attempt: int = 1) -> Context:
        return Context(self.consumer.name, self.settings, self.state, self.pool, attempt, self.registry)

    async def start(self) -> None:
        """Open the pool when needed, then run the startup hooks (a failure propagates)."""
        if self.started:
            return
        if self.pool is None and self.open_pool and self.consumer.needs_postgres:
            from relay.consume.pg import open_pool

            self.pool = open_pool(self.settings.dsn, self.pool_size())
            self._owns_pool = True
            await self.pool.open(wait=True, timeout=POOL_OPEN_TIMEOUT_S)
            if any(s.inbox is InboxKind.POSTGRES for s in self.consumer.subscriptions):
                from relay.consume.pg import acheck_inbox_table

                await acheck_inbox_table(self.pool)  # processed_events comes from `relay outbox migrate`
        for hook in self.consumer.startup:
            await _call(hook, self.context())
        self.started = True

    async def stop(self) -> None:
        """Shutdown hooks in reverse order (failures logged), then close the pool if ours."""
        if self.started:
            for hook in reversed(self.consumer.shutdown):
                try:
                    await _call(hook, self.context())
                except Exception:  # noqa: BLE001 - the other hooks and the pool still close
                    log.exception("shutdown hook %s failed", getattr(hook, "__name__", hook))
            self.started = False
        if self._owns_pool and self.pool is not None:
            await self.pool.close()
            self.pool, self._owns_pool = None, False

    def pool_size(self) -> int:
        """Enough connections for every lane that can hold one: lanes x (source + stages)."""
        total = 0
        for sub in self.consumer.subscriptions:
            if sub.inbox is InboxKind.POSTGRES:
                opts = sub.options.resolve(self.settings)
                total += opts.concurrency * (1 + len(opts.retry_delays))
        return max(2, min(total, self.settings.consumer_pool_max))

    def batch_opener(self, sub: Subscription) -> "OpenBatch | None":
        """How ``sub`` opens a batch transaction (relay.consume.batch); None: no batches. For a
        batch handler (``subscribe(batch=N)``) the "transaction" is one call of the handler with
        the events collected in it: if that raises, the driver handles them again in halves."""
        if sub.batch is not None and sub.inbox is not InboxKind.POSTGRES:
            call = self._caller(sub)

            @asynccontextmanager
            async def collect() -> AsyncIterator[Batch]:
                batch = Batch(conn=None, calls_handler=True)
                yield batch
                if batch.collected:
                    await batch.call(call(list(batch.collected), 1))
            return collect
        if sub.inbox is not InboxKind.POSTGRES:
            return None
        from relay.consume.pg import batch_handler_end, batch_opener

        end = batch_handler_end(self.consumer.name, sub.handler, self.state) if sub.batch is not None else None

        def open_batch() -> Any:
            return batch_opener(self._open_pool(), self.consumer.name, end)()
        return open_batch

    def invoker(self, sub: Subscription) -> Invoke:
        """``invoke(event, attempt) -> bool`` for ``sub`` (False: a duplicate its Postgres inbox had)."""
        if sub.inbox is InboxKind.POSTGRES:
            from relay.consume.pg import postgres_invoker

            bound: list[Invoke] = []  # the pool opens at start(), after the worker was built

            async def invoke_pg(event: Event, attempt: int) -> bool:
                if not bound:
                    bound.append(postgres_invoker(self._open_pool(), self.consumer.name, sub.handler, self.state,
                                                  batch_handler=sub.batch is not None))
                return await bound[0](event, attempt)
            return invoke_pg
        return self._table_invoker(sub)

    def _open_pool(self) -> Any:
        if self.pool is None:
            raise RuntimeError("the consumer's Postgres pool is not open: Runtime.start() first")
        return self.pool

    def _table_invoker(self, sub: Subscription) -> Invoke:
        handler, takes_context = sub.handler, sub.takes_context
        if sub.batch is not None:
            call_with = self._caller(sub)

            async def invoke_batch(event: Event, attempt: int) -> bool:
                batch = CURRENT.get()
                if batch is not None:  # called with the batch when it ends (batch_opener)
                    return batch.collect(event)
                await call_with([event], attempt)  # a retry, or a bad event alone after halving
                return True
            return invoke_batch
        if sub.is_async:
            if takes_context:
                async def invoke(event: Event, attempt: int) -> bool:
                    await handler(event, self.context(attempt))
                    return True
            else:
                async def invoke(event: Event, attempt: int) -> bool:
                    await handler(event)
                    return True
            return invoke

        # a sync handler runs in a thread: it may block (a client call) without stalling the
        # worker's heartbeats and other lanes
        call_sync = self._caller(sub)

        async def invoke_sync(event: Event, attempt: int) -> bool:
            await call_sync(event, attempt)
            return True
        return invoke_sync

    def _caller(self, sub: Subscription) -> Callable[[Any, int], Awaitable[None]]:
        """``call(argument, attempt)``: the handler with ``argument`` (and a context), sync ones in a thread."""
        handler, takes_context = sub.handler, sub.takes_context
        if sub.is_async:
            async def call(arg: Any, attempt: int) -> None:
                await (handler(arg, self.context(attempt)) if takes_context else handler(arg))
            return call

        def run(arg: Any, attempt: int) -> None:
            result = handler(arg, self.context(attempt)) if takes_context else handler(arg)
            if inspect.isawaitable(result):
                raise TypeError(f"handler {handler!r} returned an awaitable from a sync call")

        async def call_sync(arg: Any, attempt: int) -> None:
            await asyncio.to_thread(run, arg, attempt)
        return call_sync


async def _call(hook: Hook | Callable[..., Any], ctx: Context) -> None:
    result = hook(ctx)
    if inspect.isawaitable(result):
        await result
