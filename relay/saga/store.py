"""Saga runs, definitions and timers in Postgres (migration 0009): the coordinator's thin adapter.

All statements run on the connection of the coordinator's inbox transaction (a :class:`Tx`), so a
run's new state, its timers, the commands it sent (outbox) and the claim of the event that moved
it commit together. Runs are read ``FOR UPDATE``: two coordinators that both believe they own a
run (a rebalance) serialise on its row instead of deciding twice from one state.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from psycopg.types.json import Jsonb

from relay.saga.model import Workflow, from_doc, to_doc
from relay.saga.state import TERMINAL, RunState, SetTimer, from_json, to_stored

LOCK_RUNS = "SELECT run_id, xmin::text, version FROM saga_runs WHERE run_id = ANY(%s) FOR UPDATE"
CURRENT_XID = "SELECT pg_current_xact_id()::xid::text"
STATES = "SELECT state FROM saga_runs WHERE run_id = ANY(%s)"
# one JSON document for the batch: a jsonb[] parameter made psycopg escape every state into an
# array literal in Python (regex substitutions), 13 % of a busy coordinator's CPU
SAVE_RUNS = """
INSERT INTO saga_runs (run_id, workflow, definition_hash, status, business_key, state, started_at, updated_at)
SELECT r.run_id, r.workflow, r.hash, r.status, r.business_key, r.state, to_timestamp(r.started), to_timestamp(r.updated)
FROM jsonb_to_recordset(%s::jsonb)
     AS r(run_id text, workflow text, hash text, status text, business_key text, state jsonb, started float8,
          updated float8)
ON CONFLICT (run_id) DO UPDATE SET status = EXCLUDED.status, state = EXCLUDED.state,
    updated_at = EXCLUDED.updated_at, version = saga_runs.version + 1
"""
ADD_TIMERS = """
INSERT INTO saga_timers (timer_id, run_id, workflow, fire_at)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[]) ON CONFLICT (timer_id) DO NOTHING
"""
DROP_TIMER_IDS = "DELETE FROM saga_timers WHERE timer_id = ANY(%s)"
DUE_TIMERS = """
DELETE FROM saga_timers WHERE timer_id IN (
    SELECT timer_id FROM saga_timers WHERE fire_at <= now() ORDER BY fire_at LIMIT %s FOR UPDATE SKIP LOCKED)
RETURNING timer_id, run_id, workflow
"""
REGISTER = """
INSERT INTO saga_definitions (hash, workflow, definition) VALUES (%s, %s, %s) ON CONFLICT (hash) DO NOTHING
"""
DEFINITION = "SELECT definition FROM saga_definitions WHERE hash = %s"
# one GCRA reservation (relay.policy.bucket.reserve) on the database's clock, shared by coordinators
RESERVE = """
WITH c AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS now)
INSERT INTO saga_buckets AS b (bucket, tat) SELECT %(bucket)s, c.now + %(interval)s FROM c
ON CONFLICT (bucket) DO UPDATE SET tat = greatest(b.tat, (SELECT now FROM c)) + %(interval)s, updated_at = now()
RETURNING (SELECT now FROM c), tat
"""


@dataclass
class Locked:
    """Runs read ``FOR UPDATE`` in a transaction: their states, the version each row had, and the
    transaction's id (the ``xmin`` of every row it writes)."""

    xid: str
    versions: dict[str, int]
    states: dict[str, RunState]


class RunCache:
    """The states this coordinator stored last, so that a batch reads only row versions, not
    documents. An entry is used only while the run's row is still the version it wrote: same
    ``xmin`` (the writing transaction) and same ``version`` counter. A row written since by
    anyone else (another coordinator after a rebalance, an operator), or an entry whose
    transaction rolled back (its id never commits), no longer matches, and the state is read
    from the row. Runs that ended are dropped; at most ``size`` entries, oldest out first."""

    def __init__(self, size: int = 50_000) -> None:
        self.size = size
        self.entries: dict[str, tuple[tuple[str, int], RunState]] = {}
        self.hits = self.misses = 0

    async def lock(self, conn: Any, run_ids: Iterable[str]) -> Locked:
        ids = sorted(set(run_ids))  # sorted: a fixed lock order
        xid_cur = await conn.execute(CURRENT_XID)  # both go out together in pipeline mode
        lock_cur = await conn.execute(LOCK_RUNS, (ids,))
        xid_row = await xid_cur.fetchone()
        locked = Locked(str(xid_row[0]), {}, {})
        stale = []
        for run_id, xmin, version in await lock_cur.fetchall():
            locked.versions[run_id] = version
            entry = self.entries.get(run_id)
            if entry is not None and entry[0] == (xmin, version):
                locked.states[run_id] = entry[1]
            else:
                stale.append(run_id)
        self.hits += len(locked.states)
        self.misses += len(stale)
        if stale:
            cur = await conn.execute(STATES, (stale,))
            locked.states.update((s.run_id, s) for s in (from_json(row[0]) for row in await cur.fetchall()))
        return locked

    def stored(self, locked: Locked, runs: Iterable[RunState]) -> None:
        """``runs`` were just saved (save_runs) in ``locked``'s transaction."""
        for state in runs:
            self.entries.pop(state.run_id, None)
            if state.status not in TERMINAL:
                self.entries[state.run_id] = ((locked.xid, locked.versions.get(state.run_id, 0) + 1), state)
        while len(self.entries) > self.size:
            del self.entries[next(iter(self.entries))]


async def save_runs(conn: Any, runs: Iterable[RunState]) -> None:
    rows = [{"run_id": s.run_id, "workflow": s.workflow, "hash": s.definition_hash, "status": s.status.value,
             "business_key": s.business_key, "state": to_stored(s), "started": s.started_at, "updated": s.updated_at}
            for s in runs]
    if rows:
        await conn.execute(SAVE_RUNS, (json.dumps(rows),))


async def add_timers(conn: Any, timers: Iterable[tuple[SetTimer, str]]) -> None:
    """(timer, the workflow of its run) pairs."""
    rows = [(t.timer_id, t.run_id, wf, datetime.fromtimestamp(t.fire_at, timezone.utc)) for t, wf in timers]
    if rows:
        await conn.execute(ADD_TIMERS, [list(col) for col in zip(*rows, strict=True)])


async def drop_timers(conn: Any, timer_ids: Iterable[str]) -> None:
    ids = sorted(timer_ids)
    if ids:
        await conn.execute(DROP_TIMER_IDS, (ids,))


async def take_due_timers(conn: Any, limit: int) -> list[tuple[str, str, str]]:
    """Delete up to ``limit`` due timers; (timer id, run id, workflow) of each (the caller turns
    them into events in the same transaction)."""
    cur = await conn.execute(DUE_TIMERS, (limit,))
    return [(row[0], row[1], row[2]) for row in await cur.fetchall()]


async def register(conn: Any, wf: Workflow) -> None:
    """Store a definition version under its hash (a version is never edited, only added)."""
    await conn.execute(REGISTER, (wf.hash, wf.id, Jsonb(to_doc(wf))))


async def definition(conn: Any, definition_hash: str) -> Workflow | None:
    cur = await conn.execute(DEFINITION, (definition_hash,))
    row = await cur.fetchone()
    return None if row is None else from_doc(row[0] if isinstance(row[0], dict) else json.loads(row[0]))


async def reserve(conn: Any, bucket: str, rate: float, burst: int) -> tuple[float, float]:
    """Reserve the next slot of ``bucket`` (in the caller's transaction): (the database's clock
    now, the slot), both epoch seconds on that clock, which also fires the saga timers. The row
    stays locked until the transaction ends: takers of one bucket queue up."""
    interval = 1.0 / rate
    cur = await conn.execute(RESERVE, {"bucket": bucket, "interval": interval})
    row = await cur.fetchone()
    now, tat = float(row[0]), float(row[1])
    return now, max(now, tat - interval - (burst - 1) * interval)  # max(now, the old tat - tolerance)
