"""A run's evidence as the coordinator writes it (pure): every timeline entry chained once, the
rollback record at a rolled-back end, heads at status changes; and the verdict of `relay saga
verify` on a chain and its published head."""

from __future__ import annotations

import dataclasses

from relay.governance.evidence import Flaw, link, verify
from relay.policy import build_policy
from relay.saga import RunStatus, build_workflow
from relay.saga.audit import check
from relay.saga.evidence import EVIDENCE_AGGREGATE, ROLLBACK_ENTRY, collect, extend
from relay.saga.gate import Gate
from relay.saga.state import from_json, to_stored
from tests.unit.saga_sim import Sim

WF = build_workflow({"id": "order", "steps": {
    "charge": {"type": "worker", "topic": "payment.charge", "side_effect": True,
               "compensation": {"topic": "payment.refund"}},
    "ship": {"type": "worker", "topic": "shipping.ship", "depends_on": ["charge"]},
}})


def run(fail_ship: bool):
    gate = Gate(build_policy({"version": "v1", "default": "allow", "rules": []}))
    behaviour = (lambda c: ("fail", "no", False) if c.step == "ship" else ("ok", {})) if fail_ship else None
    return Sim(WF, gate=gate, **({"behaviour": behaviour} if behaviour else {})).run({"amount": 1})


def test_each_entry_is_chained_once_across_batches_and_survives_storage():
    state = run(fail_ship=False)
    half = dataclasses.replace(state, timeline=state.timeline[:3], status=RunStatus.RUNNING, evidence=None)
    first, publish = extend(half, None)
    first = [x for x, _text in first]
    assert [x.seq for x in first] == [1, 2, 3] and not publish, "running: no head yet"
    stored = from_json(to_stored(half))  # the chain position is part of the stored state
    whole = dataclasses.replace(state, evidence=stored.evidence)
    rest, publish = extend(whole, RunStatus.RUNNING)
    rest = [x for x, _text in rest]
    chain = first + rest
    assert [x.content for x in chain] == state.timeline and publish, "completed: its head goes out"
    assert verify(chain) is None and whole.evidence == [len(chain), chain[-1].hash, len(state.timeline)]
    assert extend(whole, RunStatus.COMPLETED) == ([], False), "nothing new: nothing added, no head"


def test_a_rolled_back_run_ends_its_chain_with_the_rollback_record():
    state = run(fail_ship=True)
    assert state.status is RunStatus.COMPENSATED
    ext = collect({"r1": state}, {"r1": None})
    last = ext.links[-1][1].content
    assert last["outcome"] == ROLLBACK_ENTRY and last["record"]["compensation_order"] == ["charge"]
    [head] = ext.heads
    assert head.aggregatetype == EVIDENCE_AGGREGATE and head.aggregateid == "r1"
    assert head.payload["head"] == ext.links[-1][1].hash and head.payload["seq"] == len(ext.links)


def chain_of(n):
    links, prev = [], "0" * 64
    for i in range(1, n + 1):
        links.append(link(i, prev, {"outcome": f"e{i}"}))
        prev = links[-1].hash
    return links


def test_verify_names_the_first_bad_entry_and_reads_heads_by_run_state():
    chain = chain_of(5)
    assert check(chain, "completed", chain[-1].hash, "r").ok
    modified = [*chain[:2], dataclasses.replace(chain[2], content={"outcome": "forged"}), *chain[3:]]
    assert check(modified, "completed", chain[-1].hash, "r").finding.flaw is Flaw.MODIFIED
    deleted = chain[:2] + chain[3:]
    assert (check(deleted, "completed", chain[-1].hash, "r").finding.seq,
            check(deleted, "completed", chain[-1].hash, "r").finding.flaw) == (3, Flaw.DELETED)
    extra = link(3, chain[1].hash, {"outcome": "slipped in"})
    inserted = [*chain[:2], extra, *[dataclasses.replace(x, seq=x.seq + 1) for x in chain[2:]]]
    assert check(inserted, "completed", chain[-1].hash, "r").finding is not None
    rewritten = chain_of(4)  # a whole chain recomputed: consistent in itself, not with Kafka
    assert check(rewritten, "completed", chain[-1].hash, "r").finding.flaw is Flaw.TRUNCATED
    live = check(chain, "running", chain[2].hash, "r")
    assert live.ok and live.uncovered == 2, "a live run's tail after its last head is not a flaw"
    assert check(chain, "completed", chain[2].hash, "r").finding.flaw is Flaw.INSERTED
    assert check(chain, "completed", None, "r").finding.flaw is Flaw.TRUNCATED, "an ended run has a head"
