"""The saga coordinator: a Postgres-inbox consumer of its workflows' saga topics, running the engine.

    coordinator = SagaCoordinator([order_workflow, incident_workflow])
    consumer = coordinator.consumer          # relay worker mymodule:consumer

It consumes ``outbox.event.saga.<workflow>`` for each workflow it runs. Per batch of events (one
partition, offset order, keyed by run id) in one transaction: the
events' ids are claimed (inbox), the runs are read ``FOR UPDATE``, each event goes through
:func:`relay.saga.engine.decide`, and the new states, their timers and the commands (as outbox
events) are written; all of it commits together, so a command is never sent for a state that was
not stored, nor a state stored without its commands. A crash before the commit re-delivers the
events; after it, the inbox drops them. A run is pinned to the definition hash it started with:
the coordinator stores every version it runs (``saga_definitions``) and loads old ones by hash.
It keeps the states it stored (:class:`relay.saga.store.RunCache`) and reads a run's document
only when its row was written since by anyone else; the row lock is taken either way.

Timers live in ``saga_timers``; a background task turns due ones into ``SagaTimer`` events on the
run's key (also for runs of a coordinator that died: they fire late, never not).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from relay.consume.consumer import Consumer, Context
from relay.consume.pg import Tx
from relay.errors import Reject
from relay.handling.event import Event
from relay.headers import event_topic
from relay.outbox.writer import OutboxEvent, awrite_many
from relay.policy.load import load_policy
from relay.saga import evidence, intents, store, wire
from relay.saga.engine import decide
from relay.saga.gate import Gate
from relay.saga.metrics import RUNS_BY_STATE, RUNS_BY_STATE_PARAMS, SagaMetrics
from relay.saga.model import Workflow
from relay.saga.state import Command, Dispatch, RunState, RunStatus, SetTimer, Throttled
from relay.topics import apply_topics

log = logging.getLogger("relay.saga")

BATCH = 200
TIMER_POLL_S = 0.05
TIMERS_PER_ROUND = 500
RUNS_GAUGE_S = 5.0  # relay_saga_runs / relay_saga_oldest_run_seconds refresh
THROTTLE_SLACK_S = 0.002  # a slot this close is taken as now


class SagaCoordinator:
    def __init__(self, workflows: Iterable[Workflow], *, name: str = "relay-saga", batch: int = BATCH,
                 gate: Gate | None = None, evidence: bool | None = None) -> None:
        self.workflows = {wf.id: wf for wf in workflows}
        self.gate = gate  # None: RELAY_SAGA_POLICY's, read at startup (unset: no gate)
        self._evidence_wanted = evidence  # None: RELAY_SAGA_EVIDENCE (auto: with a gate)
        self._declaring: dict[str, bool] = {}
        self.evidence = False
        self.versions: dict[str, Workflow] = {wf.hash: wf for wf in self.workflows.values()}
        self.consumer = Consumer(name, postgres=True)
        for wf in self.workflows.values():  # one topic per workflow: outbox.event.saga.<workflow>
            self.consumer.subscribe(wire.saga_aggregate(wf.id), inbox="postgres", batch=batch)(self.handle)
        self.consumer.on_startup(self._start)
        self.consumer.on_shutdown(self._stop)
        self._timers: asyncio.Task[None] | None = None
        self.metrics: SagaMetrics | None = None  # on the worker's registry, from startup
        self.cache = store.RunCache()  # states it stored, used while their rows are unchanged

    # -- the batch handler --------------------------------------------------------------------
    async def handle(self, events: list[Event], tx: Tx) -> None:
        locked = await self.cache.lock(tx.conn, [e.key or "" for e in events])
        runs = locked.states
        batch = _Batch(runs)
        now = time.time()
        for e in events:
            run_id = e.key
            if not run_id:
                raise Reject(f"saga event {e.id}: no key; expected the run id as the record key")
            state = runs.get(run_id)
            wf = await self._definition(tx, state, e)
            event = wire.decode(e.type or "", e.payload, now, run_id)
            try:
                new, commands = decide(wf, state, event, self.gate)
            except ValueError as exc:
                raise Reject(f"saga event {e.id} ({e.type}) for run {run_id}: {exc}") from None
            if self.metrics is not None:
                self.metrics.observe(state, new)
            if self._declares(wf):  # side-effect intents, with the commands' outbox rows
                rows, compensated = intents.intents(wf, state, new, commands, self.consumer.name)
                batch.intents += rows
                batch.compensated += compensated
            batch.decided(wf, state, new, commands, wire.Envelope(
                new.workflow, correlation_id=new.business_key or run_id, causation_id=e.id,
                traceparent=_header(e, wire.SagaHeader.TRACEPARENT), parent_workflow=new.parent_workflow))
        await self._reserve(tx, batch, now)
        heads = await self._evidence(tx, batch) if self.evidence else []
        await intents.save(tx.conn, batch.intents, batch.compensated)
        await store.save_runs(tx.conn, batch.changed.values())
        self.cache.stored(locked, batch.changed.values())
        live = {tid for r in batch.changed.values() for tid in r.timers}  # timer ids name their run: unique
        await store.add_timers(tx.conn, [(t, runs[t.run_id].workflow) for t in batch.timers if t.timer_id in live])
        await store.drop_timers(tx.conn, batch.dropped - live)
        out = [ev for c, env in batch.sends if id(c) not in batch.unsent for ev in wire.encode(c, env)] + heads
        if out:
            await tx.outbox.write_many(out, schemas=None)  # our envelope, no user schema

    async def _reserve(self, tx: Tx, batch: "_Batch", now: float) -> None:
        """Throttled commands take their bucket's next slot (buckets in a fixed order: no two
        coordinators wait for each other); one whose slot is later is not sent now: its run hears
        of it (Throttled) and sends it at the slot."""
        throttled = [(c.bucket or "", c) for c, _env in batch.sends if isinstance(c, Dispatch) and c.throttle]
        for bucket, c in sorted(throttled, key=lambda bc: bc[0]):
            assert c.throttle is not None
            db_now, slot = await store.reserve(tx.conn, bucket, c.throttle.rate_per_sec, c.throttle.burst)
            if slot - db_now > THROTTLE_SLACK_S:  # the slot on the clock that fires timers: never early
                batch.unsent.add(id(c))
                wf = self.versions[batch.runs[c.run_id].definition_hash]
                new, commands = decide(wf, batch.runs[c.run_id], Throttled(c.command_id, slot, now), self.gate)
                batch.decided(wf, batch.runs[c.run_id], new, commands, None)

    def _declares(self, wf: Workflow) -> bool:
        """Whether ``wf`` has a step that declares an effect changing something (its intents are recorded)."""
        known = self._declaring.get(wf.hash)
        if known is None:
            known = self._declaring[wf.hash] = any(intents.declared(wf, s) for s in wf.steps)
        return known

    @staticmethod
    async def _evidence(tx: Tx, batch: "_Batch") -> list[OutboxEvent]:
        """The changed runs' new timeline entries as chain links; the heads to publish."""
        ext = evidence.collect(batch.changed, batch.before)
        await evidence.save(tx.conn, ext)
        return ext.heads

    async def _definition(self, tx: Tx, state: RunState | None, e: Event) -> Workflow:
        if state is None:
            name = wire.workflow_of(e.payload) if e.type == wire.SagaEvent.START else None
            wf = self.workflows.get(name or "")
            if wf is None:
                raise Reject(f"saga event {e.id} ({e.type}) for run {e.key}: "
                             + (f"workflow {name!r} is not run here; expected one of {sorted(self.workflows)}"
                                if name else "no such run (a run starts with a SagaStart)"))
            return wf
        known = self.versions.get(state.definition_hash)
        if known is None:
            known = await store.definition(tx.conn, state.definition_hash)
            if known is None:
                raise Reject(f"run {state.run_id}: its definition {state.definition_hash[:12]} is not stored")
            self.versions[known.hash] = known
        return known

    # -- lifecycle: definitions and the timer pump --------------------------------------------
    async def _start(self, ctx: Context) -> None:
        if self.gate is None and ctx.settings.saga_policy is not None:  # a bad policy stops the start
            self.gate = Gate(load_policy(ctx.settings.saga_policy), env=ctx.settings.policy_env)
        if self.gate is not None:
            log.info("saga gate: policy %s in %s", self.gate.policy.hash[:12], self.gate.env)
        wanted = ctx.settings.saga_evidence if self._evidence_wanted is None else self._evidence_wanted
        self.evidence = self.gate is not None if wanted == "auto" else wanted in (True, "on")
        if self.evidence:  # its heads' topic, compacted (Connect would create it with delete)
            await asyncio.to_thread(apply_topics, ctx.settings, [event_topic(evidence.EVIDENCE_AGGREGATE)],
                                    configs={event_topic(evidence.EVIDENCE_AGGREGATE): {"cleanup.policy": "compact"}})
        async with ctx.pool.connection() as conn:
            async with conn.transaction():
                for wf in self.workflows.values():
                    await store.register(conn, wf)
        self.metrics = SagaMetrics(ctx.registry)
        self._timers = asyncio.create_task(self._pump(ctx), name="relay-saga-timers")

    async def _stop(self, ctx: Context) -> None:
        if self._timers is not None:
            self._timers.cancel()
            await asyncio.gather(self._timers, return_exceptions=True)

    async def _pump(self, ctx: Context) -> None:
        counted = 0.0
        while True:
            try:
                fired = await self.fire_due_timers(ctx.pool)
                if self.metrics is not None and time.monotonic() - counted > RUNS_GAUGE_S:
                    counted = time.monotonic()
                    async with ctx.pool.connection() as conn:
                        cur = await conn.execute(RUNS_BY_STATE, RUNS_BY_STATE_PARAMS)
                        self.metrics.set_runs(await cur.fetchall(), self.workflows)
            except Exception:  # noqa: BLE001 - a database hiccup: timers fire on a later round
                log.warning("saga timers: a round failed; trying again", exc_info=True)
                fired = 0
            if fired < TIMERS_PER_ROUND:
                await asyncio.sleep(TIMER_POLL_S)

    @staticmethod
    async def fire_due_timers(pool: Any, limit: int = TIMERS_PER_ROUND) -> int:
        """Turn due timers into SagaTimer events on their runs' keys, in one transaction."""
        async with pool.connection() as conn:
            async with conn.transaction():
                due = await store.take_due_timers(conn, limit)
                if due:
                    await awrite_many(conn, [OutboxEvent(wire.saga_aggregate(workflow), run, wire.SagaEvent.TIMER.value,
                                                         {"timer_id": tid}) for tid, run, workflow in due],
                                      schemas=None)
        return len(due)


class _Batch:
    """What one batch decided: the runs it changed, their timers, and the commands to send."""

    def __init__(self, runs: dict[str, RunState]) -> None:
        self.runs = runs
        self.changed: dict[str, RunState] = {}
        self.before: dict[str, RunStatus | None] = {}  # each changed run's status before the batch
        self.timers: list[SetTimer] = []
        self.dropped: set[str] = set()  # timers a run no longer waits for (all, once it ends): deleted, not fired
        self.sends: list[tuple[Command, wire.Envelope]] = []
        self.unsent: set[int] = set()   # ids of commands the gate's throttle held back
        self.intents: list[dict[str, Any]] = []  # side-effect records to write (relay.saga.intents)
        self.compensated: list[str] = []         # ... and keys whose effect was compensated

    def decided(self, wf: Workflow, state: RunState | None, new: RunState, commands: list[Command],
                env: wire.Envelope | None) -> None:
        if state is not None:
            self.dropped |= state.timers.keys() - new.timers.keys()
        self.before.setdefault(new.run_id, None if state is None else state.status)
        self.runs[new.run_id] = self.changed[new.run_id] = new
        for c in commands:
            if isinstance(c, SetTimer):
                self.timers.append(c)
            else:
                assert env is not None, "a Throttled event sends nothing"
                self.sends.append((c, env))


def _header(e: Event, name: str) -> str | None:
    raw = e.headers.get(name)
    return raw.decode() if isinstance(raw, bytes) else None
