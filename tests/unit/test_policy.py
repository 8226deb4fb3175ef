"""The policy gate's rules without I/O: loading with every problem listed, first match wins,
the article's alias, conditions on facts and input fields, the throttle's token bucket."""

import pytest

from relay.errors import PolicyError
from relay.policy import Decision, build_policy, evaluate, load_policy, reserve

ARTICLE = """
version: v1
rules:
- id: require-compensation-for-prod-writes
  when:
    env: production
    side_effect: true
    compensation_declared: false
  decision: require_human
- id: deny-irreversible-delete-without-approval
  when:
    topic: infra.delete
    rollback_supported: false
    approval_present: false
  decision: deny
"""

MATRIX = {"version": "v1", "default": "allow", "rules": [
    {"id": "no-deletes", "when": {"topic": "infra.delete*", "approval_present": False}, "decision": "deny"},
    {"id": "big-payments", "when": {"topic": "payments.*", "amount": {"gt": 1000}}, "decision": "require_approval"},
    {"id": "refunds", "when": {"topic": "payments.refund"}, "decision": "throttle",
     "throttle": {"rate_per_sec": 2, "burst": 3, "key": "input.tenant"}},
    {"id": "irreversible", "when": {"effect_class": ["irreversible", "external_notification"]},
     "decision": "require_approval"},
    {"id": "eu-tenants", "when": {"input.region": "eu", "direction": "forward"}, "decision": "deny"},
]}


def test_the_articles_policy_loads_as_written_and_its_alias_means_require_approval():
    policy = load_policy(ARTICLE)
    assert [r.id for r in policy.rules] == ["require-compensation-for-prod-writes",
                                            "deny-irreversible-delete-without-approval"]
    write = {"env": "production", "side_effect": True, "compensation_declared": False, "topic": "crm.update"}
    verdict = evaluate(policy, write)
    assert (verdict.decision, verdict.rule_id, verdict.policy_hash) == (
        Decision.REQUIRE_APPROVAL, "require-compensation-for-prod-writes", policy.hash)
    delete = {"env": "staging", "topic": "infra.delete", "rollback_supported": False, "approval_present": False}
    assert evaluate(policy, delete).decision is Decision.DENY
    unmatched = evaluate(policy, {**delete, "approval_present": True})
    assert (unmatched.decision, unmatched.rule_id) == (Decision.DENY, None), "the default: deny"


@pytest.mark.parametrize(("facts", "decision", "rule"), [
    ({"topic": "infra.delete.vm", "approval_present": False}, Decision.DENY, "no-deletes"),
    ({"topic": "infra.delete.vm", "approval_present": True}, Decision.ALLOW, None),
    ({"topic": "payments.charge", "input": {"amount": 1500}}, Decision.REQUIRE_APPROVAL, "big-payments"),
    ({"topic": "payments.charge", "input": {"amount": 1000}}, Decision.ALLOW, None),
    ({"topic": "payments.charge", "input": {"amount": "lots"}}, Decision.ALLOW, None),
    ({"topic": "payments.charge"}, Decision.ALLOW, None),
    ({"topic": "payments.refund", "input": {"tenant": "acme"}}, Decision.THROTTLE, "refunds"),
    ({"topic": "mail.send", "effect_class": "external_notification"}, Decision.REQUIRE_APPROVAL, "irreversible"),
    ({"topic": "crm.update", "input": {"region": "eu"}, "direction": "forward"}, Decision.DENY, "eu-tenants"),
    ({"topic": "crm.update", "input": {"region": "eu"}, "direction": "compensation"}, Decision.ALLOW, None),
])
def test_each_decision_first_match_wins_and_a_missing_fact_never_matches(facts, decision, rule):
    verdict = evaluate(build_policy(MATRIX), facts)
    assert (verdict.decision, verdict.rule_id) == (decision, rule)


def test_a_throttle_verdict_names_its_bucket_per_key_value():
    policy = build_policy(MATRIX)
    a = evaluate(policy, {"topic": "payments.refund", "input": {"tenant": "acme"}})
    b = evaluate(policy, {"topic": "payments.refund", "input": {"tenant": "globex"}})
    assert (a.bucket, b.bucket) == ("refunds:acme", "refunds:globex")
    assert a.throttle is not None and (a.throttle.rate_per_sec, a.throttle.burst) == (2.0, 3)


def test_a_burst_across_runs_gets_burst_slots_at_once_then_one_per_interval():
    tat, slots = None, []
    for _ in range(7):  # seven reservations at t=0, rate 2/s, burst 3
        s = reserve(tat, 0.0, rate=2.0, burst=3)
        tat, slots = s.tat, slots + [s.at]
    assert slots == pytest.approx([0.0, 0.0, 0.0, 0.5, 1.0, 1.5, 2.0]), "queued fairly, in the order taken"
    assert reserve(tat, 2.0, 2.0, 3).at == pytest.approx(2.5), "the queue is still ahead at t=2"
    later = reserve(tat, 60.0, 2.0, 3)
    assert later.at == 60.0 and later.tat == pytest.approx(60.5), "after a quiet spell: the burst again"
    assert [reserve(later.tat, 60.0, 2.0, 3).at, reserve(60.5 + 0.5, 60.0, 2.0, 3).at] == [60.0, 60.0]
    with pytest.raises(ValueError, match="rate = 0"):
        reserve(None, 0.0, rate=0, burst=1)


def test_every_problem_is_listed_with_rule_field_value_and_expectation():
    bad = {"version": "v2", "default": "throttle", "colour": "red", "rules": [
        {"id": "a", "when": {"env": 3, "amount": {"over": 5}, "planet": "mars"}, "decision": "maybe"},
        {"id": "a", "when": {}, "decision": "allow"},
        {"id": "t", "when": {"topic": "x"}, "decision": "throttle"},
        {"id": "u", "when": {"topic": "x"}, "decision": "throttle",
         "throttle": {"rate_per_sec": 0, "burst": 0, "key": "weather"}},
        {"when": {"effect_class": "dangerous", "side_effect": "yes"}, "decision": "allow"},
        "not a rule",
    ]}
    with pytest.raises(PolicyError) as err:
        build_policy(bad, name="bad.yaml")
    text = str(err.value)
    for expected in ["version = 'v2'; expected one of ['v1']",
                     "default = 'throttle'",
                     "colour = 'red'",
                     "rule 1 (a): when.env = 3; expected a string",
                     "rule 1 (a): when.amount = {'over': 5}",
                     "rule 1 (a): when.planet = 'mars'",
                     "rule 1 (a): decision = 'maybe'; expected one of",
                     "rule 2 (a): id = 'a'; expected an id no other rule has",
                     "rule 3 (t): throttle = None; expected {rate_per_sec, burst, key} with decision throttle",
                     "rule 4 (u): throttle.rate_per_sec = 0", "rule 4 (u): throttle.burst = 0",
                     "rule 4 (u): throttle.key = 'weather'",
                     "rule 5: id = None", "rule 5: when.effect_class = 'dangerous'", "rule 5: when.side_effect = 'yes'",
                     "rule 6: rule = 'not a rule'"]:
        assert expected in text, f"{expected!r} not in:\n{text}"
    assert len(err.value.problems) == 16


def test_the_hash_changes_with_the_content_only():
    a = build_policy(MATRIX)
    assert build_policy(dict(reversed(list(MATRIX.items())))).hash == a.hash
    changed = {**MATRIX, "default": "deny"}
    assert build_policy(changed).hash != a.hash


def test_cli_check_prints_the_rules_in_order_or_every_problem(tmp_path):
    import json

    from typer.testing import CliRunner

    from relay.cli.policy import app

    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(ARTICLE)
    bad.write_text("version: v2\nrules:\n- {id: x, when: {planet: mars}, decision: maybe}\n")
    runner = CliRunner()
    result = runner.invoke(app, ["check", str(good), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [r["id"] for r in doc["rules"]] == ["require-compensation-for-prod-writes",
                                               "deny-irreversible-delete-without-approval"]
    assert doc["rules"][0]["decision"] == "require_approval" and doc["default"] == "deny"
    result = runner.invoke(app, ["check", str(bad)])
    assert result.exit_code == 1
    assert "3 problem(s)" in result.output and "rule 1 (x): when.planet = 'mars'" in result.output
