"""A run's evidence (issue 17): its timeline as a hash chain in Postgres, its head on Kafka.

In the coordinator's transaction (with the run's new state, its commands and the claim of the
events that moved it) each changed run's new timeline entries become links of a hash chain in
``saga_evidence`` (:mod:`relay.governance.evidence`: entry n holds entry n-1's hash), so every
decision the gate made and every transition is there, in order. A run that ends compensated,
compensation_failed or cancelled appends the rollback evidence record
(:func:`relay.governance.rollback.rollback_record`).

When a run's status changes to anything but running (it waits for an approval, compensates,
ends), and whenever an ended run gets new entries (a child answering its parent again), its
chain head goes out as an outbox event to ``outbox.event.saga-evidence``, a
compacted topic keyed by run id: a database rewritten alone no longer matches Kafka, and an
ended run is covered whole. Entries written since the last head (a live run's tail) are
protected by the chain only until the next one. :mod:`relay.saga.audit` checks both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from relay.governance.evidence import GENESIS, Link, canonical, entry_hash
from relay.governance.rollback import ENDED as ROLLED_BACK, rollback_record
from relay.outbox.writer import OutboxEvent
from relay.saga.state import TERMINAL, RunState, RunStatus

EVIDENCE_AGGREGATE = "saga-evidence"  # outbox.event.saga-evidence: compacted, keyed by run id
HEAD_EVENT = "SagaEvidenceHead"
ROLLBACK_ENTRY = "rollback evidence"
PUBLISHED = TERMINAL | {RunStatus.AWAITING_APPROVAL, RunStatus.COMPENSATING}  # a head goes out on entering these

INSERT = """
INSERT INTO saga_evidence (run_id, seq, prev, hash, entry)
SELECT r.run_id, r.seq, r.prev, r.hash, r.entry
FROM jsonb_to_recordset(%s::jsonb) AS r(run_id text, seq integer, prev text, hash text, entry jsonb)
"""


@dataclass
class Extension:
    """What one batch adds to the evidence: chain links by run, and the heads to publish."""

    links: list[tuple[str, Link, str]]  # (run id, link, its content as canonical JSON: hashed and stored)
    heads: list[OutboxEvent]


def extend(state: RunState, before: RunStatus | None) -> tuple[list[tuple[Link, str]], bool]:
    """The links (with their canonical JSON) for ``state``'s timeline entries not yet in its
    chain (``state.evidence`` moves on), and whether to publish its head (its status changed
    from ``before`` to a published one)."""
    seq, head, covered = state.evidence or (0, GENESIS, 0)
    contents: list[dict[str, Any]] = list(state.timeline[covered:])
    if state.status in ROLLED_BACK and before not in ROLLED_BACK:
        record = rollback_record(state)
        if record is not None:
            contents.append({"outcome": ROLLBACK_ENTRY, "record": record})
    links = []
    for content in contents:
        seq += 1
        text = canonical(content)
        digest = entry_hash(seq, head, content, text)
        links.append((Link(seq, content, head, digest), text))
        head = digest
    state.evidence = [seq, head, len(state.timeline)]
    ended = state.status in TERMINAL and bool(links)  # an ended run is covered whole, also when it answers again
    return links, ended or (state.status != before and state.status in PUBLISHED)


def collect(changed: dict[str, RunState], before: dict[str, RunStatus | None]) -> Extension:
    """:func:`extend` for every run a batch changed."""
    out = Extension([], [])
    for run_id, state in changed.items():
        links, publish = extend(state, before.get(run_id))
        out.links.extend((run_id, x, text) for x, text in links)
        if publish and state.evidence is not None:
            seq, head, _ = state.evidence
            out.heads.append(OutboxEvent(EVIDENCE_AGGREGATE, run_id, HEAD_EVENT, {
                "run_id": run_id, "workflow": state.workflow, "seq": seq, "head": head,
                "status": state.status.value}))
    return out


async def save(conn: Any, ext: Extension) -> None:
    """Write the links in the caller's transaction (the heads go with the batch's outbox events)."""
    if ext.links:  # the entries' canonical text as it was hashed: each is encoded once
        rows = ",".join(f'{{"run_id":{json.dumps(run_id)},"seq":{x.seq},"prev":"{x.prev}","hash":"{x.hash}",'
                        f'"entry":{text}}}' for run_id, x, text in ext.links)
        await conn.execute(INSERT, (f"[{rows}]",))
