"""The policy gate on the real stack (issue 17): a coordinator worker with RELAY_SAGA_POLICY,
participants as workers, decisions checked from Postgres and the CLI as an operator uses it.

- allow / deny / require_human (the alias) / throttle, each on the order saga's charge or ship;
- an approval bound to payload hash A is refused for hash B (the CLI refuses, nothing is sent);
- a throttle bucket shared by 20 runs: burst at once, then at most the rate, measured from the
  times the coordinator wrote the ship commands to the outbox;
- the incident triage under "approval for the rollback in production": the dry-run plan says
  so before the run; the run waits at the rollback until an approval of its payload.
"""

import json
import time

import psycopg
import pytest

from relay.saga.start import start
from tests.support.saga_checks import wait_ended
from tests.support.saga_gate import gated_workers, relay, status_of, wait_status

pytestmark = pytest.mark.integration
RATE, BURST, THROTTLED_RUNS = 5, 2, 20

POLICY = """
version: v1
default: allow
rules:
  - id: big-charges
    when: {{topic: {wf}.charge, amount: {{gte: 1000}}}}
    decision: deny
  - id: mid-charges
    when: {{topic: {wf}.charge, amount: {{gte: 500}}}}
    decision: require_human
    approval: {{scope: [ann, bob], four_eyes: true}}
  - id: shipping-rate
    when: {{topic: {wf}.ship}}
    decision: throttle
    throttle: {{rate_per_sec: {rate}, burst: {burst}, key: topic}}
  - id: approval-for-rollback
    when: {{topic: {wf}.sre.rollback, env: production}}
    decision: require_approval
"""


def test_each_decision_on_the_real_stack(stack, settings, unique, tmp_path):
    wf = f"gate{unique}"
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(wf=wf, rate=RATE, burst=BURST))
    relay(settings, "policy", "check", str(policy))
    coordinator, participants = gated_workers(settings, wf, unique, policy)
    try:
        with psycopg.connect(settings.dsn) as conn, conn.transaction():
            throttled = [start(conn, wf, input={"amount": 1, "fail": False}, idempotency_key=f"t{i}")
                         for i in range(THROTTLED_RUNS)]
            denied = start(conn, wf, input={"amount": 1000, "fail": False}, idempotency_key="big")
            held = start(conn, wf, input={"amount": 600, "fail": False}, idempotency_key="mid", initiator="ann")
            refused = start(conn, wf, input={"amount": 700, "fail": False}, idempotency_key="mid2")
        state = wait_status(settings.dsn, held, "awaiting_approval")
        [gate] = state["gates"].values()
        assert gate["rule"] == "mid-charges" and gate["state"] == "pending"

        other = "0" * 64  # what the approver saw is not what would run
        out = relay(settings, "saga", "approve", held, "charge", "--by", "bob", "--hash", other, check=False)
        assert out.returncode == 1 and f"the request for {gate['hash'][:12]}" in out.stderr, out.stderr
        out = relay(settings, "saga", "approve", held, "charge", "--by", "ann", check=False)
        assert out.returncode == 1 and "four eyes" in out.stderr, out.stderr
        relay(settings, "saga", "approve", held, "charge", "--by", "bob", "--hash", gate["hash"])
        wait_status(settings.dsn, refused, "awaiting_approval")
        relay(settings, "saga", "deny", refused, "charge", "--by", "ann", "--reason", "over budget")
        status = wait_ended(settings.dsn, wf, THROTTLED_RUNS + 3, 120)
    finally:
        coordinator.stop()
        participants.stop()
    assert [status[r] for r in throttled] == ["completed"] * THROTTLED_RUNS, coordinator.log()[-3000:]
    assert (status[denied], status[held], status[refused]) == ("failed", "completed", "failed")
    with psycopg.connect(settings.dsn) as conn:
        charges = {r for (r,) in conn.execute("SELECT run_id FROM demo_saga_effects WHERE workflow = %s AND "
                                              "kind = 'charge'", (wf,))}
        shipped = [row[0].timestamp() for row in conn.execute(
            "SELECT created_at FROM outbox WHERE aggregatetype = %s AND aggregateid = ANY(%s) ORDER BY created_at",
            (f"{wf}.ship", throttled))]
        denied_state = conn.execute("SELECT state FROM saga_runs WHERE run_id = %s", (denied,)).fetchone()[0]
        refused_state = conn.execute("SELECT state FROM saga_runs WHERE run_id = %s", (refused,)).fetchone()[0]
    assert denied not in charges and refused not in charges and held in charges, "denied: never sent"
    entry = next(e for e in denied_state["timeline"] if e["outcome"] == "denied")
    assert entry["rule"] == "big-charges" and entry["decision"] == "deny" and len(entry["policy"]) == 12
    assert refused_state["steps"]["charge"]["error"] == "denied by ann: over budget"
    # the bucket: BURST at once, then one per 1/RATE s (written after the slot: never before it)
    assert len(shipped) == THROTTLED_RUNS
    for i, at in enumerate(shipped):
        assert at - shipped[0] >= (i - BURST + 1) / RATE - 0.02, (i, [round(s - shipped[0], 3) for s in shipped])
    assert shipped[-1] - shipped[0] < (THROTTLED_RUNS - BURST) / RATE + 5, "throttled, not stuck"


def test_incident_triage_waits_for_approval_of_the_rollback(stack, settings, unique, tmp_path):
    wf = f"tri{unique}"
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(wf=wf, rate=RATE, burst=BURST))
    plan = json.loads(relay(settings, "policy", "explain", str(policy), "--workflow",
                            _triage_yaml(tmp_path, wf),
                            "--input", '{"incident_id": "INC-1", "summary": "5xx"}', "--json").stdout)
    assert {(a["step"], a["decision"]) for a in plan["actions"]} >= {("rollback", "require_approval"),
                                                                   ("classify", "allow")}
    coordinator, participants = gated_workers(settings, wf, unique, policy)
    try:
        with psycopg.connect(settings.dsn) as conn, conn.transaction():
            run = start(conn, f"{wf}_triage", input={"incident_id": "INC-1", "summary": "5xx"}, idempotency_key="i1")
        wait_status(settings.dsn, run, "awaiting_approval")
        relay(settings, "saga", "approve", run, "approval_gate", "--by", "oncall")
        state = wait_status(settings.dsn, run, "awaiting_approval")
        deadline = time.monotonic() + 30
        while "rollback" not in state["gates"] and time.monotonic() < deadline:
            time.sleep(0.2)
            state = status_of(settings.dsn, run)[1]
        assert state["gates"]["rollback"]["rule"] == "approval-for-rollback"
        relay(settings, "saga", "approve", run, "rollback", "--by", "sre-lead", "--reason", "error rate 4x")
        status = wait_ended(settings.dsn, f"{wf}_triage", 1, 60)
    finally:
        coordinator.stop()
        participants.stop()
    assert status[run] == "completed", coordinator.log()[-3000:]
    with psycopg.connect(settings.dsn) as conn:
        rollbacks = conn.execute("SELECT count(*) FROM demo_saga_effects WHERE workflow = %s AND kind = 'rollback'",
                                 (f"{wf}_triage",)).fetchone()[0]
    assert rollbacks == 1


def _triage_yaml(tmp_path, wf):
    from relay.examples.incident_triage import WORKFLOW_ID, YAML
    path = tmp_path / "triage.yaml"
    path.write_text(YAML.replace(WORKFLOW_ID, f"{wf}_triage").replace("job.sre.", f"{wf}.sre."))
    return str(path)


def test_the_bucket_statement_reserves_as_the_pure_rule_says(stack, settings, unique):
    """store.RESERVE on real Postgres against relay.policy.bucket.reserve, fed the same clock."""
    import asyncio

    from relay.policy.bucket import reserve
    from relay.saga import store

    async def reservations():
        async with await psycopg.AsyncConnection.connect(settings.dsn) as conn, conn.transaction():
            return [await store.reserve(conn, f"test:{unique}", 4.0, 3) for _ in range(8)]

    tat = None
    for db_now, slot in asyncio.run(reservations()):
        expected = reserve(tat, db_now, 4.0, 3)
        assert slot == pytest.approx(expected.at, abs=1e-6)
        tat = expected.tat
    assert slot - db_now == pytest.approx(5 * 0.25, abs=0.05), "the 8th of burst 3 at 4/s: 1.25 s out"
