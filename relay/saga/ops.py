"""Operating saga runs: list, show, approve/deny, cancel, retry, definitions (``relay saga``).

Reads come from ``saga_runs``, the table the coordinator writes in the same transaction as its
decisions, so what they show is never older than what the coordinator decided. Controls
(approve, deny, cancel, retry) are outbox events on the run's key: they reach the run's
coordinator in order with everything else addressed to it, and are applied by the engine's rules
(the first decision of an approval stands; a cancel compensates what completed; a retry resumes a
``failed`` or ``compensation_failed`` run).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg

from relay.errors import ApprovalRefused, RelayError
from relay.governance import approvals
from relay.outbox.writer import write
from relay.saga import wire
from relay.saga.core import UNDO
from relay.saga.gating import request_of
from relay.saga.state import TIMELINE_KEYS, RunStatus, from_json, to_json

LIST = """
SELECT run_id, workflow, status, business_key, started_at, updated_at, left(definition_hash, 12)
FROM saga_runs
WHERE (%(state)s::text IS NULL OR status = %(state)s::text)
  AND (%(workflow)s::text IS NULL OR workflow = %(workflow)s::text)
  AND (%(key)s::text IS NULL OR business_key = %(key)s::text)
  AND (%(age)s::float8 IS NULL OR updated_at <= now() - make_interval(secs => %(age)s::float8))
ORDER BY started_at DESC LIMIT %(limit)s
"""
SHOW = "SELECT state, definition_hash, version FROM saga_runs WHERE run_id = %s"
DEFINITIONS = """
SELECT d.workflow, d.hash, d.registered_at, count(r.run_id) FILTER (WHERE r.status NOT IN
       ('completed', 'compensated', 'compensation_failed', 'failed', 'cancelled')) AS in_flight,
       count(r.run_id) AS runs
FROM saga_definitions d LEFT JOIN saga_runs r ON r.definition_hash = d.hash
GROUP BY d.workflow, d.hash, d.registered_at ORDER BY d.workflow, d.registered_at
"""


@dataclass(frozen=True)
class RunRow:
    run_id: str
    workflow: str
    status: str
    business_key: str | None
    started_at: Any
    updated_at: Any
    definition: str

    def as_dict(self) -> dict[str, Any]:
        return {k: (str(v) if k.endswith("_at") else v) for k, v in self.__dict__.items()}


def list_runs(conn: psycopg.Connection[Any], *, state: str | None = None, workflow: str | None = None,
              business_key: str | None = None, older_than_s: float | None = None, limit: int = 100) -> list[RunRow]:
    if state is not None and state not in RunStatus.__members__.values():
        raise RelayError(f"--state {state!r}: expected one of {[s.value for s in RunStatus]}")
    rows = conn.execute(LIST, {"state": state, "workflow": workflow, "key": business_key, "age": older_than_s,
                               "limit": limit}).fetchall()
    return [RunRow(*r) for r in rows]


def show_run(conn: psycopg.Connection[Any], run_id: str) -> dict[str, Any]:
    row = conn.execute(SHOW, (run_id,)).fetchone()
    if row is None:
        raise RelayError(f"no saga run {run_id!r} (relay saga list shows the runs)")
    state, definition_hash, version = row  # stored without its defaults (to_stored): shown whole
    run = to_json(from_json(state))
    run["timeline"] = [{**TIMELINE_KEYS, **e} for e in run["timeline"]]
    return {**run, "definition_hash": definition_hash, "version": version}


def definitions(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    return [{"workflow": w, "hash": h, "registered_at": str(at), "runs_in_flight": live, "runs": total}
            for w, h, at, live, total in conn.execute(DEFINITIONS).fetchall()]


def control(conn: psycopg.Connection[Any], run_id: str, kind: wire.SagaEvent, payload: dict[str, Any], *,
            workflow: str | None = None) -> str:
    """Write an operator's control event for a run (in ``conn``'s transaction); returns its id.

    With ``workflow`` the run need not be stored yet: an approval written in the transaction that
    starts the run (or before its coordinator got to it) follows the start on the run's key and
    is kept until the run reaches the step."""
    if workflow is None:
        row = conn.execute("SELECT workflow FROM saga_runs WHERE run_id = %s", (run_id,)).fetchone()
        if row is None:
            raise RelayError(f"no saga run {run_id!r} (relay saga list shows the runs)")
        workflow = str(row[0])
    return str(write(conn, aggregatetype=wire.saga_aggregate(workflow), aggregateid=run_id, type=kind.value,
                     payload=payload, schemas=None))


def decide_approval(conn: psycopg.Connection[Any], run_id: str, step: str, *, approved: bool, by: str,
                    reason: str = "", workflow: str | None = None, payload_hash: str | None = None) -> str:
    """Approve or deny a run's approval step (the first decision stands), or the policy gate's
    request for a step's command (or its compensation); see :func:`control`.

    A gate's request is bound to the hash of the payload it would send: ``payload_hash`` is what
    the approver saw (default: the open request's, as ``relay saga show`` lists it). The decision
    is checked here first, by the rules the coordinator applies again when it arrives, and a
    decision that would not count raises :class:`ApprovalRefused` with the reason, writing nothing."""
    payload: dict[str, Any] = {"step": step, "approved": approved, "by": by, "reason": reason}
    request = open_request(conn, run_id, step) if workflow is None else None
    if request is not None:
        req, counted = request
        payload["payload_hash"] = payload_hash or req.payload_hash
        outcome = approvals.decide(req, counted, approvals.Decision(by, approved, payload["payload_hash"],
                                                                    time.time(), reason))
        if not outcome.counted:
            raise ApprovalRefused(outcome.refusal or "refused")
    elif payload_hash is not None:
        payload["payload_hash"] = payload_hash
    return control(conn, run_id, wire.SagaEvent.APPROVAL, payload, workflow=workflow)


def open_request(conn: psycopg.Connection[Any], run_id: str, step: str,
                 ) -> tuple[approvals.ApprovalRequest, list[approvals.Decision]] | None:
    """The policy gate's pending request for ``step`` (its command, else its compensation) with
    the decisions counted so far; None when the run has none open."""
    row = conn.execute("SELECT state FROM saga_runs WHERE run_id = %s", (run_id,)).fetchone()
    if row is None:
        return None
    state = from_json(row[0])
    for target in (step, UNDO + step):
        g = state.gates.get(target)
        if g is not None and g["state"] == approvals.ApprovalState.PENDING.value:
            return request_of(state, target)
    return None
