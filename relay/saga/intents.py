"""The coordinator's half of the side-effect records: the intent (issue 17).

For a step that declares an effect class that changes something (not ``none``, ``read``), the
coordinator writes the record of each command in the transaction that writes the command's
outbox row, before any participant acts on it: ``validated`` (the gate let it through; proposed
before that, both in its history), ``approval_required`` while the gate waits for an approval,
``approved`` once it was granted for that payload hash, ``failed`` when the gate denied it. The
participant's executor (:mod:`relay.saga.effects`) takes it on from there (started, committed,
failed, ambiguous), and a completed compensation makes a committed record ``compensated``.
Proposal (the intent, here) stays apart from commit (the effect, there).
"""

from __future__ import annotations

import json
from typing import Any

from relay.governance.lifecycle import MOVES, EffectState
from relay.policy.model import EffectClass
from relay.saga.gate import payload_hash
from relay.saga.model import Workflow
from relay.saga.state import Command, Dispatch, RequestApproval, RunState

PASSIVE = (EffectClass.NONE, EffectClass.READ)
INTENT = (EffectState.PROPOSED, EffectState.VALIDATED, EffectState.APPROVAL_REQUIRED, EffectState.APPROVED)
# the moves the coordinator makes on an existing record: within the intent (a record the
# participant took on is its own; a command sent again does not move it back)
ALLOWED = [f"{a.value}>{b.value}" for a in INTENT for b in MOVES[a] if b is not EffectState.STARTED]

UPSERT = """
INSERT INTO effects AS e (idempotency_key, request_hash, request, state, effect_class, target, run_id, step,
                          command_id, actor, approval, history)
SELECT r.key, r.hash, r.request, r.state, r.class, r.target, r.run, r.step, r.command, r.actor, r.approval, r.history
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(key text, hash text, request jsonb, state text, class text, target text,
                                              run text, step text, command text, actor text, approval jsonb,
                                              history jsonb)
ON CONFLICT (idempotency_key) DO UPDATE SET state = EXCLUDED.state, approval = coalesce(EXCLUDED.approval, e.approval),
    command_id = coalesce(EXCLUDED.command_id, e.command_id), updated_at = now(),
    history = e.history || EXCLUDED.history
WHERE e.request_hash = EXCLUDED.request_hash AND e.state || '>' || EXCLUDED.state = ANY(%(allowed)s)
"""
COMPENSATED = """
UPDATE effects SET state = 'compensated', updated_at = now(),
    history = history || jsonb_build_array(jsonb_build_object('state', 'compensated', 'at', now()))
WHERE idempotency_key = ANY(%s) AND state = 'committed'
"""


def _row(wf: Workflow, key: str, step: str, topic: str, payload: Any, state: EffectState, *, run: str,
         command: str | None, actor: str, history: list[dict[str, Any]], approval: Any = None) -> dict[str, Any]:
    spec = wf.steps[step.split("[", 1)[0]]
    return {"key": key, "hash": payload_hash(topic, payload), "request": payload, "state": state.value,
            "class": spec.effect.value if spec.effect else None, "target": topic, "run": run, "step": step,
            "command": command, "actor": actor, "approval": approval, "history": history}


def declared(wf: Workflow, step: str) -> bool:
    spec = wf.steps.get(step.split("[", 1)[0])
    return spec is not None and spec.effect is not None and spec.effect not in PASSIVE


def intents(wf: Workflow, before: RunState | None, after: RunState, commands: list[Command], actor: str,
            ) -> tuple[list[dict[str, Any]], list[str]]:
    """(records to write, keys whose effect was compensated) for one decision of a run."""
    rows: list[dict[str, Any]] = []
    at = after.updated_at
    for c in commands:
        if isinstance(c, Dispatch) and not c.compensation and declared(wf, c.step):
            gate = after.gates.get(c.step, {})
            votes = gate.get("decisions") if gate.get("state") == "approved" else None
            state = EffectState.APPROVED if votes is not None else EffectState.VALIDATED
            history = [{"state": "proposed", "at": at}, {"state": "validated", "at": at}] if votes is None else \
                [{"state": "approved", "at": at, "by": [d["by"] for d in votes]}]
            rows.append(_row(wf, c.idempotency_key, c.step, c.topic, c.input, state, run=c.run_id,
                             command=c.command_id, actor=actor, history=history, approval=votes))
        elif isinstance(c, RequestApproval) and c.gate is not None and not c.gate["compensation"] \
                and declared(wf, c.step):
            rows.append(_row(wf, f"{c.run_id}/{c.step}", c.step, after.gates[c.step]["topic"], c.input,
                             EffectState.APPROVAL_REQUIRED, run=c.run_id, command=None, actor=actor, history=[
                                 {"state": "proposed", "at": at}, {"state": "validated", "at": at},
                                 {"state": "approval_required", "at": at, "rule": c.gate["rule"]}]))
    compensated = []
    for entry in after.timeline[len(before.timeline) if before else 0:]:
        step = entry.get("step")
        if not step or not declared(wf, step):
            continue
        if entry["outcome"] == "compensated":
            compensated.append(f"{after.run_id}/{step}")
        elif entry["outcome"] == "denied":  # by the policy, a person, or an expired request
            spec, request = wf.steps[step.split("[", 1)[0]], after.gates.get(step)
            row = _row(wf, f"{after.run_id}/{step}", step, spec.topic or "", None, EffectState.FAILED,
                       run=after.run_id, command=None, actor=actor,
                       history=[{"state": "proposed", "at": at}, {"state": "failed", "at": at,
                                                                   "why": entry.get("error")}])
            if request is not None:  # the record of the request: the same key and request hash
                row.update(hash=request["hash"], request=request.get("input"), history=row["history"][1:])
            rows.append(row)
    return rows, compensated


def merged(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per key (an upsert may touch a row once): the last state, the histories joined."""
    by_key: dict[str, dict[str, Any]] = {}
    for row in rows:
        old = by_key.get(row["key"])
        by_key[row["key"]] = row if old is None else {**row, "history": old["history"] + row["history"],
                                                      "approval": row["approval"] or old["approval"]}
    return list(by_key.values())


async def save(conn: Any, rows: list[dict[str, Any]], compensated: list[str]) -> None:
    if rows:
        await conn.execute(UPSERT, {"rows": json.dumps(merged(rows), default=str), "allowed": ALLOWED})
    if compensated:
        await conn.execute(COMPENSATED, (compensated,))
