"""Side-effect records through a whole run on the real stack (issue 17): the coordinator writes
the intent with the command's outbox row (proposed, validated, approval_required, approved), the
participant's executor the effect (started, committed); one record per idempotency key, its
history the lifecycle in order. And optimistic concurrency: two runs expect version 1 of one
aggregate; one applies, the other is refused as stale and never applied."""

import psycopg
import pytest

from relay.saga.start import start
from tests.support.saga_checks import wait_ended
from tests.support.saga_gate import gated_workers, relay, wait_status

pytestmark = pytest.mark.integration

POLICY = """
version: v1
default: allow
rules:
  - id: big-payments
    when: {{topic: {wf}.pay, amount: {{gt: 100}}}}
    decision: require_approval
"""


def history(dsn, key):
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT state, history, effect_class, request_hash FROM effects "
                           "WHERE idempotency_key = %s", (key,)).fetchone()
    return row[0], [h["state"] for h in row[1]], row[2], row[3]


def test_intent_then_effect_one_record_per_key_with_its_lifecycle(stack, settings, unique, tmp_path):
    wf = f"rec{unique}"
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(wf=wf))
    coordinator, participants = gated_workers(settings, wf, unique, policy, app="tests.support.external_app",
                                              aggregates=[f"saga.{wf}", f"{wf}.pay", f"{wf}.note", f"saga.{wf}_case",
                                                          f"{wf}.case"])
    try:
        with psycopg.connect(settings.dsn) as conn, conn.transaction():
            small = start(conn, wf, input={"amount": 5}, idempotency_key="small")
            big = start(conn, wf, input={"amount": 500}, idempotency_key="big")
            conn.execute("INSERT INTO ext_cases VALUES (%s, 'low', 1)", (f"c-{wf}",))
            first = start(conn, f"{wf}_case", input={"case": f"c-{wf}", "risk": "high", "version": 1},
                          idempotency_key="first")
            stale = start(conn, f"{wf}_case", input={"case": f"c-{wf}", "risk": "medium", "version": 1},
                          idempotency_key="stale")
        wait_status(settings.dsn, big, "awaiting_approval")
        assert history(settings.dsn, f"{big}/pay")[:2] == ("approval_required",
                                                           ["proposed", "validated", "approval_required"])
        relay(settings, "saga", "approve", big, "pay", "--by", "cfo")
        status = wait_ended(settings.dsn, wf, 2, 60)
        cases = wait_ended(settings.dsn, f"{wf}_case", 2, 60)
    finally:
        coordinator.stop()
        participants.stop()
    assert status == {small: "completed", big: "completed"}, coordinator.log()[-2000:]
    state, states, kind, digest = history(settings.dsn, f"{small}/pay")
    assert (state, states, kind) == ("committed", ["proposed", "validated", "started", "committed"],
                                     "external_transaction")
    assert history(settings.dsn, f"{big}/pay")[:2] == ("committed", ["proposed", "validated", "approval_required",
                                                                     "approved", "started", "committed"])
    assert history(settings.dsn, f"{small}/note")[:2] == ("validated", ["proposed", "validated"]), \
        "a plain participant: the intent only (its own writes are in its transaction)"
    with psycopg.connect(settings.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM ext_provider WHERE wf = %s", (wf,)).fetchone()[0] == 2
        case = conn.execute("SELECT risk, version FROM ext_cases WHERE case_id = %s", (f"c-{wf}",)).fetchone()
        loser = first if cases.get(first) == "failed" else stale
        error = conn.execute("SELECT state->'steps'->'update'->>'error' FROM saga_runs WHERE run_id = %s",
                             (loser,)).fetchone()[0]
    # optimistic concurrency: both expected version 1; one applied, the other (stale) never was
    assert sorted(cases.values()) == ["completed", "failed"] and case[1] == 2, (cases, case)
    assert case[0] == ("medium" if loser == first else "high"), "the winner's change, only"
    assert "expects version 1, the aggregate is at 2" in error


def test_a_move_the_lifecycle_does_not_have_is_refused_naming_both_states(stack, settings, unique):
    import asyncio

    from relay.governance.lifecycle import EffectState, IllegalTransition
    from relay.saga.effects import _move

    key = f"illegal-{unique}"
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO effects (idempotency_key, request_hash, state, target) VALUES (%s, 'h', 'failed', "
                     "'t')", (key,))

    async def commit_a_failed_effect():
        async with await psycopg.AsyncConnection.connect(settings.dsn, autocommit=True) as conn:
            await _move(conn, key, EffectState.COMMITTED, (EffectState.STARTED,), why="test")

    with pytest.raises(IllegalTransition, match="failed -> committed is not a move of its lifecycle"):
        asyncio.run(commit_a_failed_effect())
