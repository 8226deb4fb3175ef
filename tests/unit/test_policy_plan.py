"""The dry-run plan without I/O: the incident-triage workflow under a policy that requires
approval for job.sre.rollback says so before the run starts; compensations are planned too."""

import json

from typer.testing import CliRunner

from relay.examples import incident_triage
from relay.examples.order_saga import order_workflow
from relay.policy import Decision, build_policy
from relay.saga.plan import plan

TRIAGE_POLICY = {"version": "v1", "default": "allow", "rules": [
    {"id": "approve-production-rollbacks", "when": {"env": "production", "topic": "job.sre.rollback"},
     "decision": "require_approval"}]}


def test_the_triage_plan_says_the_rollback_needs_approval_in_production_only():
    policy, wf = build_policy(TRIAGE_POLICY), incident_triage.workflow()
    actions = plan(wf, policy, {"incident_id": "INC-1", "summary": "5xx"}, env="production")
    assert [(a.step, a.verdict.decision) for a in actions] == [
        ("classify", Decision.ALLOW), ("logs_scan", Decision.ALLOW), ("metric_scan", Decision.ALLOW),
        ("rollback", Decision.REQUIRE_APPROVAL)]
    assert actions[-1].verdict.rule_id == "approve-production-rollbacks"
    assert actions[0].facts["input"] == {"incident_id": "INC-1", "summary": "5xx"}
    staging = plan(wf, policy, {"incident_id": "INC-1", "summary": "5xx"}, env="staging")
    assert {a.verdict.decision for a in staging} == {Decision.ALLOW}


def test_compensations_are_planned_with_their_own_facts():
    policy = build_policy({"version": "v1", "default": "allow", "rules": [
        {"id": "undo-needs-a-person", "when": {"direction": "compensation"}, "decision": "require_approval"},
        {"id": "prod-writes-need-an-undo", "when": {"side_effect": True, "compensation_declared": False},
         "decision": "deny"}]})
    actions = plan(order_workflow("shop"), policy, {"amount": 5, "fail": False}, env="production")
    assert [(a.step, a.direction, a.topic, a.verdict.decision.value) for a in actions] == [
        ("charge", "forward", "shop.charge", "allow"),
        ("charge", "compensation", "shop.refund", "require_approval"),
        ("reserve", "forward", "shop.reserve", "allow"),
        ("reserve", "compensation", "shop.release", "require_approval"),
        ("ship", "forward", "shop.ship", "allow")]
    refund = actions[1].facts
    assert "compensation_declared" not in refund and "charge" not in refund["input"], "needs charge's output"


def test_cli_explain(tmp_path):
    from relay.cli.policy import app

    path = tmp_path / "policy.yaml"
    path.write_text(json.dumps(TRIAGE_POLICY))  # JSON is YAML
    result = CliRunner().invoke(app, ["explain", str(path), "--workflow", "relay.examples.incident_triage:workflow",
                                      "--input", '{"incident_id": "INC-1", "summary": "x"}', "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["actions"][-1] == {"step": "rollback", "direction": "forward", "topic": "job.sre.rollback",
                                  "decision": "require_approval", "rule": "approve-production-rollbacks"}
    bad = CliRunner().invoke(app, ["explain", str(path), "--workflow", "relay.examples.incident_triage:workflow",
                                   "--input", "[1]"])
    assert bad.exit_code == 1 and "--input = '[1]'; expected a JSON object" in bad.output


def test_a_declared_effect_class_is_a_fact_and_leaves_older_definitions_their_hash():
    import pytest

    from relay.errors import SagaDefinitionError
    from relay.saga import build_workflow

    # the article's workflow as written (no effect declared) keeps the hash it had before steps had one
    assert incident_triage.workflow().hash.startswith("be4ca5d29821")
    doc = {"id": "wipe", "steps": {"delete": {"type": "worker", "topic": "infra.delete", "side_effect": True,
                                              "no_rollback_reason": "gone is gone", "effect": "irreversible"}}}
    wf = build_workflow(doc)
    policy = build_policy({"version": "v1", "default": "allow", "rules": [
        {"id": "two-people-for-irreversible", "when": {"effect_class": "irreversible"},
         "decision": "require_approval"}]})
    (action,) = plan(wf, policy, {}, env="production")
    assert action.facts["effect_class"] == "irreversible" and action.verdict.rule_id == "two-people-for-irreversible"
    assert build_workflow({**doc, "steps": {"delete": {**doc["steps"]["delete"], "effect": None}}}).hash != wf.hash
    from relay.saga.model import from_doc, to_doc
    assert from_doc(to_doc(wf)) == wf, "stored with its effect"
    older = to_doc(incident_triage.workflow())
    for step in older["steps"].values():
        del step["effect"]  # stored before steps had one
    assert from_doc(older) == incident_triage.workflow()
    with pytest.raises(SagaDefinitionError, match="step 'delete': effect = 'dangerous'; expected one of"):
        build_workflow({**doc, "steps": {"delete": {**doc["steps"]["delete"], "effect": "dangerous"}}})
