"""The rollback evidence record read off a run's timeline (no I/O): the order saga failing at
shipping undoes reserve then charge; a step with a no-rollback reason counts as skipped."""

from relay.governance.rollback import rollback_record
from relay.policy import build_policy
from relay.saga import RunStatus, build_workflow
from relay.saga.gate import Gate
from tests.unit.saga_sim import Sim


def saga(with_note: bool):
    note = {"type": "worker", "topic": "crm.note", "depends_on": ["reserve"], "side_effect": True,
            "no_rollback_reason": "a note is harmless"}
    steps = {
        "charge": {"type": "worker", "topic": "payment.charge", "side_effect": True,
                   "compensation": {"topic": "payment.refund"}},
        "reserve": {"type": "worker", "topic": "inventory.reserve", "depends_on": ["charge"], "side_effect": True,
                    "compensation": {"topic": "inventory.release"}},
        "ship": {"type": "worker", "topic": "shipping.ship", "depends_on": ["note" if with_note else "reserve"]},
    }
    if with_note:
        steps["note"] = note
    return build_workflow({"id": "order", "steps": steps})


def failing_ship(cmd):
    return ("fail", "no courier", False) if cmd.step == "ship" else ("ok", {"id": f"{cmd.step}-1"})


def test_a_compensated_run_has_the_articles_record():
    policy = build_policy({"version": "v1", "default": "allow", "rules": [
        {"id": "undo-allowed", "when": {"direction": "compensation"}, "decision": "allow"}]})
    state = Sim(saga(with_note=True), behaviour=failing_ship, gate=Gate(policy)).run({"amount": 10})
    assert state.status is RunStatus.COMPENSATED
    record = rollback_record(state)
    assert record is not None
    assert {k: record[k] for k in ("status", "failed_step", "matched_policy_id", "rollback_triggered",
                                   "rollback_mode", "compensation_jobs_dispatched", "compensation_jobs_skipped",
                                   "compensation_order")} == {
        "status": "compensated", "failed_step": "ship", "matched_policy_id": "undo-allowed",
        "rollback_triggered": True, "rollback_mode": "lifo_stack", "compensation_jobs_dispatched": 2,
        "compensation_jobs_skipped": 1, "compensation_order": ["reserve", "charge"]}
    assert record["rollback_finished_at"].endswith("Z") and record["rollback_started_at"].endswith("Z")


def test_a_run_without_a_rollback_has_no_record():
    state = Sim(saga(with_note=False)).run({"amount": 10})
    assert state.status is RunStatus.COMPLETED and rollback_record(state) is None


def test_without_a_gate_no_rule_matched_and_a_denied_step_is_the_failed_one():
    state = Sim(saga(with_note=False), behaviour=failing_ship).run({"amount": 10})
    assert rollback_record(state)["matched_policy_id"] is None
    policy = build_policy({"version": "v1", "default": "allow", "rules": [
        {"id": "no-shipping", "when": {"topic": "shipping.ship"}, "decision": "deny"}]})
    state = Sim(saga(with_note=False), gate=Gate(policy)).run({"amount": 10})
    assert rollback_record(state)["failed_step"] == "ship"
