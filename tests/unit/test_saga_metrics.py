"""Saga metrics read off a run's timeline (no I/O)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from relay.saga.metrics import SagaMetrics, outcome_kind
from relay.saga.state import Approval
from tests.unit.saga_sim import Sim
from tests.unit.test_saga_engine import INCIDENT, order_saga


def value(reg: CollectorRegistry, name: str, **labels: str) -> float:
    return reg.get_sample_value(name, labels) or 0.0


def test_transitions_retries_and_step_latency_come_from_the_timeline():
    reg = CollectorRegistry()
    m = SagaMetrics(reg)
    calls = {"n": 0}

    def behaviour(c):
        if c.step == "ship" and not c.compensation:
            calls["n"] += 1
            return ("fail", "busy", True) if calls["n"] == 1 else ("fail", "no courier", False)
        return ("ok", {"id": "x"})

    sim = Sim(order_saga(retry={"max_retries": 3, "initial_backoff_sec": 2}), behaviour=behaviour)
    sim.run({"amount": 1})
    m.observe(None, sim.state)
    assert value(reg, "relay_saga_transitions_total", workflow="order", outcome="compensated") == 2
    assert value(reg, "relay_saga_transitions_total", workflow="order", outcome="run compensated") == 1
    assert value(reg, "relay_saga_retries_total", workflow="order") == 1
    assert value(reg, "relay_saga_step_seconds_count", workflow="order", step="charge") == 1


def test_approval_wait_is_measured_from_the_step_start():
    from relay.saga import load_workflow
    reg = CollectorRegistry()
    m = SagaMetrics(reg)
    sim = Sim(load_workflow(INCIDENT))
    sim.run({"incident_id": "I", "summary": "s"})
    before = sim.state
    sim.feed(Approval("approval_gate", True, 42.0, by="lead"))
    m.observe(before, sim.state)
    assert value(reg, "relay_saga_approval_wait_seconds_sum", workflow="incident_triage_parallel", kind="step") == 42.0
    assert outcome_kind("approved by lead") == "approved" and outcome_kind("run completed") == "run completed"


def test_a_gate_approval_is_measured_once_decided_by_its_last_approver():
    from relay.policy import build_policy
    from relay.saga.gate import Gate
    from relay.saga.state import Start
    reg = CollectorRegistry()
    m = SagaMetrics(reg)
    policy = build_policy({"version": "v1", "default": "allow", "rules": [
        {"id": "two", "when": {"topic": "shipping.ship"}, "decision": "require_approval",
         "approval": {"approvers": 2}}]})
    sim = Sim(order_saga(), gate=Gate(policy))
    sim.feed(Start("r1", {"amount": 1}, 0.0))
    sim.drain()
    h = sim.requests[0].gate["hash"]
    for by, at in (("ann", 10.0), ("bob", 30.0)):
        before = sim.state
        sim.feed(Approval("ship", True, at, by=by, payload_hash=h))
        m.observe(before, sim.state)
    assert value(reg, "relay_saga_approval_wait_seconds_count", workflow="order", kind="gate") == 1
    assert value(reg, "relay_saga_approval_wait_seconds_sum", workflow="order", kind="gate") == 30.0


def test_runs_by_state_gauges():
    reg = CollectorRegistry()
    m = SagaMetrics(reg)
    m.set_runs([("order", "running", 3, 12.5), ("order", "compensation_failed", 1, 3600.0)], ["order", "triage"])
    assert value(reg, "relay_saga_runs", workflow="order", state="running") == 3
    assert value(reg, "relay_saga_oldest_run_seconds", workflow="order", state="compensation_failed") == 3600.0
    # a gauged state without runs is 0, not absent (an alert on compensation_failed > 0 keeps its series)
    assert value(reg, "relay_saga_runs", workflow="triage", state="compensation_failed") == 0
    assert reg.get_sample_value("relay_saga_runs", {"workflow": "order", "state": "completed"}) is None, "a counter"
