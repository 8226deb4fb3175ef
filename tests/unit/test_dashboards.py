"""The Grafana dashboard (deploy/grafana/) and the alerts (deploy/prometheus/) against the code.

- every metric a panel or an alert names is one the code exports, read off the metric objects of
  relay/metrics.py and relay/saga/metrics.py (no second list here), with the labels it matches on;
- every expression parses with promtool (Prometheus' own parser and rule checker, `make test` builds
  it into .cache/bin) and promtool's unit tests of the alerts pass;
- every alert has a duration, a severity, a summary, a description and a runbook section in
  docs/operations.md, and the dashboard JSON is what deploy/grafana/dashboard.py writes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import promql_parser
import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

import relay.metrics
from relay.saga.metrics import SagaMetrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_PY = ROOT / "deploy" / "grafana" / "dashboard.py"
DASHBOARD = json.loads((ROOT / "deploy" / "grafana" / "outbox-relay.json").read_text())
RULE = yaml.safe_load((ROOT / "deploy" / "prometheus" / "outbox-relay-rules.yaml").read_text())
RULE_TESTS = ROOT / "deploy" / "prometheus" / "outbox-relay-rules.test.yaml"
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()
ALERTS = [r for g in RULE["spec"]["groups"] for r in g["rules"] if "alert" in r]
# series Prometheus makes itself for every target, and the labels it (or the ServiceMonitor) adds
SYNTHETIC = {"up": set()}
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "endpoint", "container"}
# Grafana's variables, as a query would be sent
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "$topic": ".*",
                     "$workflow": ".*"}
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("", "_sum", "_count", "_created"), "info": ("_info",), "stateset": ("",), "enum": ("",)}


def _metric_objects(holder: object) -> list[MetricWrapperBase]:
    """The prometheus_client metrics an object holds (attributes, and the values of dict attributes)."""
    found = []
    for value in vars(holder).values():
        for item in value.values() if isinstance(value, dict) else [value]:
            if isinstance(item, MetricWrapperBase):
                found.append(item)
    return found


def exported() -> dict[str, set[str]]:
    """Every series name the code's metrics expose -> the labels it has. Each metric holder of
    relay.metrics (a _Served subclass with create()) and the saga coordinator's SagaMetrics."""
    holders: list[tuple[CollectorRegistry, object]] = []
    for cls in vars(relay.metrics).values():
        if isinstance(cls, type) and issubclass(cls, relay.metrics._Served) and hasattr(cls, "create"):
            made = cls.create()
            holders.append((made.registry, made))
    registry = CollectorRegistry()
    holders.append((registry, SagaMetrics(registry)))
    names: dict[str, set[str]] = {}
    for registry, holder in holders:
        objects = _metric_objects(holder)
        families = {family.name: family.type for family in registry.collect()}
        by_family = {}
        for metric in objects:
            family = metric._name  # what collect() names it: a counter without its _total
            assert family in families, f"{family} is not on its registry"
            by_family[family] = set(metric._labelnames)
        assert set(by_family) == set(families), f"metrics not found on {type(holder).__name__}: " \
                                                 f"{set(families) ^ set(by_family)}"
        for family, kind in families.items():
            for suffix in SUFFIXES[kind]:
                names[family + suffix] = by_family[family] | ({"le"} if suffix == "_bucket" else set())
    return names


EXPORTED = exported()


def dashboard_expressions() -> dict[str, str]:
    """where -> PromQL of every panel target and query variable of the dashboard."""
    found = {}
    panels = list(DASHBOARD["panels"])
    for panel in panels:
        panels.extend(panel.get("panels", []))
        for t in panel.get("targets", []):
            found[f"panel {panel['id']} ({panel['title']}) {t['refId']}"] = t["expr"]
    for var in DASHBOARD["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"]["query"])
            assert m, var["query"]
            found[f"variable {var['name']}"] = m.group(1)
    return found


def alert_expressions() -> dict[str, str]:
    return {f"alert {r['alert']}": r["expr"] for r in ALERTS}


EXPRESSIONS = {**dashboard_expressions(), **alert_expressions()}


def as_sent(expr: str) -> str:
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
    return expr


def selectors(node: object) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []
    promql_parser.walk(node, lambda n: found.append(n) if isinstance(n, promql_parser.VectorSelector) else None)
    return found


def _name(sel: promql_parser.VectorSelector) -> str | None:
    if sel.name:
        return sel.name
    return next((m.value for m in sel.matchers.matchers if m.name == "__name__"), None)


def test_the_code_exports_metrics_this_test_can_see():
    # a few anchors, so that an empty registry walk cannot pass everything below vacuously
    for name in ("relay_consumer_lag", "relay_dead_lettered_total", "relay_outbox_slot_retained_wal_bytes",
                 "relay_saga_step_seconds_bucket", "relay_poller_published_total"):
        assert name in EXPORTED, name


@pytest.mark.parametrize("where", sorted(EXPRESSIONS))
def test_every_metric_used_is_exported_with_the_labels_matched_on(where):
    tree = promql_parser.parse(as_sent(EXPRESSIONS[where]))
    used = selectors(tree)
    assert used, f"{where}: no metric"
    known = {**EXPORTED, **SYNTHETIC}
    for sel in used:
        name = _name(sel)
        assert name in known, f"{where}: {name} is not a metric the code exports"
        matched = {m.name for m in sel.matchers.matchers} - {"__name__"}
        assert matched <= known[name] | TARGET_LABELS, f"{where}: {name} has no label {matched - known[name]}"

    def grouping(node: object) -> None:
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            available = set(TARGET_LABELS)
            for sel in selectors(node.expr):
                available |= known[_name(sel)]
            missing = set(node.modifier.labels) - available
            assert not missing, f"{where}: grouped by {missing}, which none of its metrics has"

    promql_parser.walk(tree, grouping)


def test_dashboard_and_alerts_use_every_area_asked_for():
    used = {_name(s) for e in EXPRESSIONS.values() for s in selectors(promql_parser.parse(as_sent(e)))}
    for name in ("relay_outbox_oldest_unpublished_age_seconds", "relay_outbox_slot_retained_wal_bytes",
                 "relay_outbox_connector_running", "relay_consumer_lag", "relay_dead_lettered_total",
                 "relay_parked_keys", "relay_circuit_state", "relay_saga_transitions_total",
                 "relay_saga_step_seconds_bucket", "relay_saga_runs", "relay_saga_approval_wait_seconds_bucket", "up"):
        assert name in used, name


# --- promtool -----------------------------------------------------------------------------------
def promtool() -> str:
    found = os.environ.get("PROMTOOL") or shutil.which("promtool", path=str(ROOT / ".cache" / "bin"))
    if not found:
        # a 6-minute Go build on a fresh machine: `make check-alerts` builds it and runs these;
        # `make test` parses every expression with promql-parser (above) instead
        pytest.skip("promtool not installed: make check-alerts")
    return found


def run(*args: str) -> str:
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


def test_promtool_checks_the_rules(tmp_path):
    tool = promtool()
    assert (RULE["apiVersion"], RULE["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    rules = tmp_path / "outbox-relay-rules.groups.yaml"
    rules.write_text(yaml.safe_dump(RULE["spec"], sort_keys=False))
    out = run(tool, "check", "rules", str(rules))
    assert f"SUCCESS: {sum(len(g['rules']) for g in RULE['spec']['groups'])} rules found" in out


def test_promtool_unit_tests_of_the_alerts(tmp_path):
    tool = promtool()
    (tmp_path / "outbox-relay-rules.groups.yaml").write_text(yaml.safe_dump(RULE["spec"], sort_keys=False))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    tested = {t["alertname"] for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]
              for t in case["alert_rule_test"]}
    assert len(tested) >= 2 and tested <= {r["alert"] for r in ALERTS}
    assert "SUCCESS" in run(tool, "test", "rules", str(tmp_path / RULE_TESTS.name))


def test_promtool_parses_every_dashboard_expression(tmp_path):
    """As recording rules: promtool check rules parses each with Prometheus' parser."""
    tool = promtool()
    rules = [{"record": f"dashboard:expr_{i}:check", "expr": as_sent(expr)}
             for i, expr in enumerate(dashboard_expressions().values())]
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in run(tool, "check", "rules", str(path))


# --- alerts: what each carries --------------------------------------------------------------------
def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the headings: lower case, punctuation dropped, spaces to dashes."""
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", markdown, re.MULTILINE)}


@pytest.mark.parametrize("rule", ALERTS, ids=lambda r: r["alert"])
def test_alert_has_duration_severity_text_and_runbook(rule):
    assert re.fullmatch(r"\d+[smh]", rule["for"])
    assert rule["labels"]["severity"] in ("warning", "critical")
    notes = rule["annotations"]
    assert notes["summary"].strip() and len(notes["description"]) > 40
    doc, _, anchor = notes["runbook_url"].partition("#")
    assert doc == "docs/operations.md" and anchor == rule["alert"].lower()
    assert anchor in _anchors(OPERATIONS), f"docs/operations.md has no section {rule['alert']}"


def test_every_runbook_section_is_an_alert():
    alerts_part = OPERATIONS.split("\n## Alerts\n", 1)[1]
    sections = re.findall(r"^### (\S+)$", alerts_part, re.MULTILINE)
    assert sorted(sections) == sorted(r["alert"] for r in ALERTS)


def test_alert_names_are_unique():
    names = [r["alert"] for r in ALERTS]
    assert len(names) == len(set(names))


# --- the dashboard's form -------------------------------------------------------------------------
def test_dashboard_json_is_what_its_generator_writes():
    spec = importlib.util.spec_from_file_location("outbox_relay_dashboard", DASHBOARD_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render() == (ROOT / "deploy" / "grafana" / "outbox-relay.json").read_text(), \
        "run .venv/bin/python deploy/grafana/dashboard.py"


def test_dashboard_uses_the_templated_prometheus_datasource_and_a_sane_grid():
    assert DASHBOARD["schemaVersion"] >= 39 and DASHBOARD["uid"]
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == ("datasource", "prometheus")
    panels = DASHBOARD["panels"]
    assert [p["id"] for p in panels] == list(range(1, len(panels) + 1))
    assert sum(p["type"] == "row" for p in panels) >= 3
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            assert p["targets"] and all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"])
            assert len({t["refId"] for t in p["targets"]}) == len(p["targets"])
