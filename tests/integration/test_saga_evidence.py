"""Evidence on the real stack (issue 17): gated runs chain their timelines in saga_evidence and
publish heads through the outbox to the compacted outbox.event.saga-evidence; `relay saga
verify` holds for all of them, then names a modified, a deleted and an inserted row, and a chain
rewritten whole (consistent in itself) against the head on Kafka."""

import json

import psycopg
import pytest

from relay.governance.evidence import GENESIS, entry_hash
from relay.saga.audit import verify_runs
from relay.saga.start import start
from tests.support.saga_checks import wait_ended
from tests.support.saga_gate import gated_workers, relay

pytestmark = pytest.mark.integration
RUNS = 6

POLICY = """
version: v1
default: allow
rules:
  - id: refunds
    when: {direction: compensation}
    decision: allow
"""


def test_verify_detects_modified_deleted_inserted_and_rewritten_evidence(stack, settings, unique, tmp_path):
    wf = f"evi{unique}"
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    coordinator, participants = gated_workers(settings, wf, unique, policy)
    try:
        with psycopg.connect(settings.dsn) as conn, conn.transaction():
            runs = [start(conn, wf, input={"amount": i, "fail": i % 2 == 0}, idempotency_key=f"e{i}")
                    for i in range(RUNS)]
        status = wait_ended(settings.dsn, wf, RUNS, 90)
    finally:
        coordinator.stop()
        participants.stop()
    assert sorted(status.values()) == ["compensated"] * 3 + ["completed"] * 3, coordinator.log()[-3000:]
    reports = {r.run_id: r for r in verify_runs(settings) if r.run_id in runs}  # what `relay saga verify` runs
    assert sorted(reports) == sorted(runs)
    for report in reports.values():  # each run, chain and head: its head is on Kafka within the outbox's latency
        assert report.ok and report.entries >= 8 and report.uncovered == 0, report
    with psycopg.connect(settings.dsn) as conn:
        record = conn.execute("SELECT entry FROM saga_evidence WHERE run_id = %s ORDER BY seq DESC LIMIT 1",
                              (runs[0],)).fetchone()[0]
        assert record["outcome"] == "rollback evidence" and record["record"]["matched_policy_id"] == "refunds"
        assert record["record"]["compensation_order"] == ["reserve", "charge"]
        modified, deleted, inserted, rewritten = runs[1], runs[2], runs[3], runs[4]
        with conn.transaction():
            conn.execute("UPDATE saga_evidence SET entry = jsonb_set(entry, '{outcome}', '\"forged\"') "
                         "WHERE run_id = %s AND seq = 3", (modified,))
            conn.execute("DELETE FROM saga_evidence WHERE run_id = %s AND seq = 3", (deleted,))
            _insert_valid_row(conn, inserted, at=3)
            _rewrite_whole(conn, rewritten)
    expected = {modified: "entry 3: modified", deleted: "entry 3: deleted", inserted: "entry 3: inserted",
                rewritten: "published head is not in the chain"}
    for run, finding in expected.items():
        [report] = verify_runs(settings, run)
        assert not report.ok and finding in str(report.finding), (finding, report)
    out = relay(settings, "saga", "verify", modified, check=False)  # the CLI: the first bad entry, exit 1
    assert out.returncode == 1 and "entry 3: modified" in out.stdout, out.stdout + out.stderr
    out = relay(settings, "saga", "verify", "--all", "--json", check=False)
    bad = {r["run_id"] for r in json.loads(out.stdout) if not r["ok"]}
    assert out.returncode == 1 and bad >= set(expected) and not bad & {runs[0], runs[5]}


def _insert_valid_row(conn, run, at):
    """A forged row at ``at`` that links to the one before it, hashed correctly; later rows move on."""
    conn.execute("UPDATE saga_evidence SET seq = seq + 1000 WHERE run_id = %s AND seq >= %s", (run, at))
    conn.execute("UPDATE saga_evidence SET seq = seq - 999 WHERE run_id = %s AND seq >= 1000", (run,))
    prev = conn.execute("SELECT hash FROM saga_evidence WHERE run_id = %s AND seq = %s", (run, at - 1)).fetchone()[0]
    content = {"outcome": "approved by nobody", "at": 0}
    conn.execute("INSERT INTO saga_evidence (run_id, seq, prev, hash, entry) VALUES (%s, %s, %s, %s, %s)",
                 (run, at, prev, entry_hash(at, prev, content), json.dumps(content)))


def _rewrite_whole(conn, run):
    """Forge entry 2 and recompute every hash after it: a chain consistent in itself."""
    rows = conn.execute("SELECT seq, entry FROM saga_evidence WHERE run_id = %s ORDER BY seq", (run,)).fetchall()
    prev = GENESIS
    for seq, entry in rows:
        if seq == 2:
            entry = {**entry, "outcome": "forged"}
        digest = entry_hash(seq, prev, entry)
        conn.execute("UPDATE saga_evidence SET prev = %s, hash = %s, entry = %s WHERE run_id = %s AND seq = %s",
                     (prev, digest, json.dumps(entry), run, seq))
        prev = digest
