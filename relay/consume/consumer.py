"""``relay.Consumer``: subscribe plain handlers to routed outbox topics.

    consumer = Consumer("billing")

    @consumer.subscribe("order", types={"OrderPlaced"})
    async def on_order(event: Event, ctx: Context) -> None: ...

    @consumer.subscribe("payment", inbox="postgres")
    async def on_payment(event: Event, tx: Tx) -> None:
        await tx.execute("UPDATE ...")
        await tx.outbox.write(aggregatetype="invoice", aggregateid=..., type=..., payload=...)

Defining a consumer does nothing else (no connection, no settings read): ``relay worker
module:consumer`` runs it on Faust, ``relay.testing.Harness(consumer)`` in memory. Every option of
a subscription left as None is taken from :class:`relay.Settings` when the consumer runs (the one
place defaults live).

Guarantees of a running subscription (given by the worker, proven on the real stack):
- at least once: a source offset is committed only after its event, and every earlier one of its
  partition, was handled, skipped as a duplicate or by type, forwarded to a retry stage, or
  written to the dead-letter topic ``<topic>.dlq`` with its reason;
- ``inbox="table"`` (default): effectively once: a handled event id is recorded in a compacted
  changelog table; a crash after the handler returned but before the record re-runs the handler;
- ``inbox="postgres"``: exactly once for the writes made through ``tx``: the handler runs in a
  transaction that also claims the event id in ``processed_events``; they commit together;
- per-key order, also across retries: while an event of key K waits in a retry stage, later events
  of K wait behind it; other keys flow.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, TypeVar

from relay.errors import ConfigError
from relay.headers import event_topic

if TYPE_CHECKING:
    from relay.config import Settings

F = TypeVar("F", bound=Callable[..., Any])
Hook = Callable[["Context"], Awaitable[None] | None]


class InboxKind(StrEnum):
    """Where handled event ids are recorded (see the module's guarantees)."""

    TABLE = "table"
    POSTGRES = "postgres"


@dataclass(frozen=True)
class Options:
    """Per-subscription knobs; None takes the setting named in brackets when the consumer runs."""

    retry_delays: tuple[float, ...] | None = None  # seconds per retry stage [RELAY_RETRY_DELAYS]
    concurrency: int | None = None  # lanes per agent, per-key order kept [RELAY_CONSUMER_CONCURRENCY]
    max_in_flight: int | None = None  # taken, unfinished records per partition [RELAY_CONSUMER_MAX_IN_FLIGHT]
    breaker_failures: int | None = None  # retriable failures in a row that open the circuit [RELAY_BREAKER_FAILURES]
    breaker_open_s: float | None = None  # first open period [RELAY_BREAKER_OPEN_S]
    dedup_window_s: float | None = None  # how long an event id counts as seen [RELAY_INBOX_WINDOW_S]
    batch_size: int | None = None  # records a lane takes at once; one transaction with inbox="postgres"
    #                                [RELAY_CONSUMER_BATCH_SIZE]

    def problems(self) -> list[str]:
        out = []
        if self.retry_delays is not None and not all(_number(d) and d >= 0 for d in self.retry_delays):
            out.append(f"field 'retry_delays' = {self.retry_delays!r}; expected seconds >= 0 per stage")
        for name, low in (("concurrency", 1), ("max_in_flight", 1), ("breaker_failures", 1), ("batch_size", 1)):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
                out.append(f"field {name!r} = {value!r}; expected an integer >= {low}")
        for name in ("breaker_open_s", "dedup_window_s"):
            value = getattr(self, name)
            if value is not None and not (_number(value) and value > 0):
                out.append(f"field {name!r} = {value!r}; expected a finite number of seconds > 0")
        return out

    def resolve(self, s: "Settings") -> "Resolved":
        from relay.handling.retry import RetryPolicy

        delays = self.retry_delays if self.retry_delays is not None else RetryPolicy.parse(s.retry_delays).delays_s
        return Resolved(
            retry_delays=tuple(float(d) for d in delays),
            concurrency=_pick(self.concurrency, s.consumer_concurrency),
            max_in_flight=_pick(self.max_in_flight, s.consumer_max_in_flight),
            breaker_failures=_pick(self.breaker_failures, s.breaker_failures),
            breaker_open_s=float(_pick(self.breaker_open_s, s.breaker_open_s)),
            dedup_window_s=float(_pick(self.dedup_window_s, s.inbox_window_s)),
            batch_size=_pick(self.batch_size, s.batch_size()))


@dataclass(frozen=True)
class Resolved:
    """Options with every default filled in from Settings."""

    retry_delays: tuple[float, ...]
    concurrency: int
    max_in_flight: int
    breaker_failures: int
    breaker_open_s: float
    dedup_window_s: float
    batch_size: int


@dataclass(frozen=True)
class Subscription:
    """One handler on one topic (made by :meth:`Consumer.subscribe`)."""

    name: str  # names its tables: inbox-<name>, parked-<name>
    topic: str
    handler: Callable[..., Any]
    types: frozenset[str] | None
    inbox: InboxKind
    options: Options
    takes_context: bool  # handler(event, ctx | tx) rather than handler(event)
    is_async: bool
    batch: int | None = None  # the handler takes list[Event], up to this many at once


@dataclass
class Context:
    """What a handler (``inbox="table"``) and the lifecycle hooks receive.

    ``state`` is shared by the hooks and every handler of the consumer (put clients opened at
    startup there); ``pool`` is the worker's Postgres pool (psycopg_pool.AsyncConnectionPool, None
    unless a subscription uses ``inbox="postgres"`` or the consumer was made with ``postgres=True``);
    ``attempt`` is 1 on first delivery, n on the n-th (retries); ``registry`` is the worker's
    Prometheus registry (served on RELAY_WORKER_METRICS_PORT; None in the harness): a hook may add
    its own metrics to it."""

    consumer: str
    settings: "Settings"
    state: dict[str, Any] = field(default_factory=dict)
    pool: Any = None
    attempt: int = 1
    registry: Any = None  # the worker's Prometheus registry (RELAY_WORKER_METRICS_PORT): add your own metrics


class Consumer:
    """A named consumer (its Kafka group id and app id) with its subscriptions and hooks.

    ``store``: where the inbox tables live between restarts (``memory``: rebuilt from their
    changelogs at start; ``rocksdb``: on disk, needs the [rocksdb] extra); ``relay worker
    --store`` overrides it. ``postgres=True`` opens the worker's Postgres pool even when no
    subscription needs it (``ctx.pool``)."""

    def __init__(self, name: str, *, store: str = "memory", postgres: bool = False) -> None:
        problems = []
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            problems.append(f"field 'name' = {name!r}; expected a non-empty consumer group name without spaces")
        if store not in ("memory", "rocksdb"):
            problems.append(f"field 'store' = {store!r}; expected 'memory' or 'rocksdb'")
        if problems:
            raise ConfigError(problems)
        self.name, self.store, self.postgres = name, store, postgres
        self.subscriptions: list[Subscription] = []
        self.startup: list[Hook] = []
        self.shutdown: list[Hook] = []

    def __repr__(self) -> str:
        return f"Consumer({self.name!r}, topics={[s.topic for s in self.subscriptions]})"

    def subscribe(self, aggregatetype: str | None = None, *, topic: str | None = None,
                  types: Iterable[str] | None = None, inbox: str = "table", batch: int | None = None,
                  **options: Any) -> Callable[[F], F]:
        """Register the decorated handler for the events of ``aggregatetype`` (topic
        ``outbox.event.<aggregatetype>``) or of an explicit ``topic``.

        ``types``: only events whose ``type`` header is one of these reach the handler; the others
        are acknowledged and counted as ignored. ``inbox``: ``"table"`` (handler ``(event)`` or
        ``(event, ctx)``, sync or async) or ``"postgres"`` (``async (event, tx)``). ``batch=N``:
        the handler takes ``list[Event]`` instead, up to N events of one partition at once, in
        offset order, duplicates left out; they are recorded as handled when it returns (with
        ``inbox="postgres"``: ``async (events, tx)``, one transaction holding every claim and the
        effects). If it raises, the list is handled again in halves until a bad event is alone
        (a list of one), so it takes its own retry or dead-letter path and the others are handled.
        ``options``: the fields of
        :class:`Options`. Returns the handler unchanged (call it directly in tests). Raises
        ConfigError listing every problem."""
        def register(handler: F) -> F:
            self.subscriptions.append(self._subscription(aggregatetype, topic, types, inbox, options, handler,
                                                         batch))
            return handler
        return register

    def _subscription(self, aggregatetype: str | None, topic: str | None, types: Iterable[str] | None,
                      inbox: str, options: dict[str, Any], handler: Callable[..., Any],
                      batch: int | None = None) -> Subscription:
        problems: list[str] = []
        if (aggregatetype is None) == (topic is None):
            problems.append(f"subscribe({aggregatetype!r}, topic={topic!r}): give exactly one of an aggregate "
                            "type or a topic")
        name = aggregatetype or topic or "?"
        resolved_topic = event_topic(aggregatetype) if aggregatetype else (topic or "")
        if any(s.topic == resolved_topic for s in self.subscriptions):
            problems.append(f"topic {resolved_topic!r}: already subscribed by this consumer")
        if inbox not in InboxKind._value2member_map_:
            problems.append(f"field 'inbox' = {inbox!r}; expected 'table' or 'postgres'")
        unknown = sorted(set(options) - set(Options.__dataclass_fields__))
        if unknown:
            problems.append(f"options {unknown}: unknown; expected some of {sorted(Options.__dataclass_fields__)}")
        known = {k: v for k, v in options.items() if k not in unknown}
        if known.get("retry_delays") is not None:
            try:
                known["retry_delays"] = tuple(known["retry_delays"])
            except TypeError:
                known["retry_delays"] = (known["retry_delays"],)
        problems += _batch_problems(batch, inbox, known)
        if batch is not None and not problems:  # a lane takes a whole batch; it fits in flight
            known["batch_size"] = batch
            known["max_in_flight"] = max(batch, known.get("max_in_flight") or 0) or None
        opts = Options(**known)
        problems += opts.problems()
        type_set = frozenset(types) if types is not None else None
        if types is not None and (isinstance(types, str) or not all(isinstance(t, str) and t for t in type_set or ())):
            problems.append(f"field 'types' = {types!r}; expected a set of event type names")
        takes_context, arity_problem = _arity(handler)
        if arity_problem:
            problems.append(arity_problem)
        call = type(handler).__call__ if not inspect.isfunction(handler) and callable(handler) else None
        is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)
        if inbox == InboxKind.POSTGRES and not (is_async and takes_context):
            problems.append(f"handler {_name(handler)}: inbox='postgres' needs `async def {_name(handler)}"
                            "(event, tx)` (the effect runs on tx, in the claim's transaction)")
        if problems:
            raise ConfigError(problems)
        return Subscription(name=name, topic=resolved_topic, handler=handler, types=type_set,
                            inbox=InboxKind(inbox), options=opts, takes_context=takes_context, is_async=is_async,
                            batch=batch)

    def participant(self, step_topic: str, **options: Any) -> Callable[[F], F]:
        """Register the decorated ``async def h(command, tx) -> output`` as the saga participant of
        ``step_topic`` (a worker step's or a compensation's topic): it runs with the Postgres inbox,
        and its output (or ``StepFailed``) goes back to the run through ``tx.outbox`` in the same
        transaction (see :mod:`relay.saga.participant`). ``options``: as for :meth:`subscribe`."""
        from relay.saga.participant import wrap  # relay.saga builds on this module

        def register(handler: F) -> F:
            self.subscribe(step_topic, inbox="postgres", **options)(wrap(handler))
            return handler
        return register

    def effect(self, step_topic: str, *, effect: str = "external_transaction", **options: Any,
               ) -> Callable[[Callable[..., Any]], Any]:
        """Register the decorated ``async def call(command) -> output`` as the participant of
        ``step_topic`` that acts on the outside world, through the side-effect executor
        (:mod:`relay.saga.effects`): one effect per idempotency key and request, a record of it
        in ``effects``, and a lookup (``@call.lookup``) asked instead of sending again whenever a
        crash or a timeout left it unknown. Returns the effect (its ``lookup`` registers one)."""
        from relay.policy.model import EffectClass
        from relay.saga.effects import ExternalEffect

        try:
            kind = EffectClass(effect)
        except ValueError:
            raise ConfigError(f"effect({step_topic!r}): effect = {effect!r}; expected one of "
                              f"{[e.value for e in EffectClass]}") from None

        def register(call: Callable[..., Any]) -> ExternalEffect:
            executor = ExternalEffect(step_topic, call, kind, actor=self.name)
            self.participant(step_topic, **options)(executor)
            self.on_startup(executor.started)
            self.on_shutdown(executor.stopped)
            return executor
        return register

    def on_startup(self, hook: F) -> F:
        """Run ``hook(ctx)`` (sync or async) when the worker starts, before any event is handled;
        hooks run in registration order, after the Postgres pool is open. A hook that raises stops
        the worker."""
        self.startup.append(hook)
        return hook

    def on_shutdown(self, hook: F) -> F:
        """Run ``hook(ctx)`` when the worker stops, after the last event and before the pool
        closes; in reverse registration order. Failures are logged; the others still run."""
        self.shutdown.append(hook)
        return hook

    @property
    def needs_postgres(self) -> bool:
        return self.postgres or any(s.inbox is InboxKind.POSTGRES for s in self.subscriptions)


MAX_BATCH = 10_000


def _batch_problems(batch: Any, inbox: str, options: dict[str, Any]) -> list[str]:
    if batch is None:
        return []
    if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= MAX_BATCH:
        return [f"field 'batch' = {batch!r}; expected an integer from 1 to {MAX_BATCH} (events per handler call)"]
    if options.get("batch_size") is not None:
        return [f"field 'batch_size' = {options['batch_size']!r} with batch={batch!r}: give one of them"]
    return []


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _name(handler: Callable[..., Any]) -> str:
    return getattr(handler, "__name__", type(handler).__name__)


def _arity(handler: Callable[..., Any]) -> tuple[bool, str | None]:
    """(takes a second argument, problem): a handler takes (event) or (event, ctx)."""
    if not callable(handler):
        return False, f"handler {handler!r}: expected a function (event) or (event, ctx)"
    try:
        params = [p for p in inspect.signature(handler).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    except (TypeError, ValueError):
        return True, None
    if len(params) in (1, 2):
        return len(params) == 2, None
    return False, (f"handler {_name(handler)} takes {len(params)} required arguments; "
                   "expected (event) or (event, ctx)")
