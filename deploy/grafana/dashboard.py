"""Writes deploy/grafana/outbox-relay.json, the Grafana dashboard of outbox-relay (do not edit the JSON by hand).

    .venv/bin/python deploy/grafana/dashboard.py            # rewrite the JSON
    .venv/bin/python deploy/grafana/dashboard.py --check    # exit 1 if the JSON is not what this writes

Every metric used here is one that the code exports (relay/metrics.py, relay/saga/metrics.py);
tests/unit/test_dashboards.py checks that, parses every expression with a PromQL parser, and checks
that the JSON is in step with this file. The metrics come from three kinds of process (docs/operations.md):
workers and saga coordinators (`relay worker`), the outbox monitor (`relay outbox stats --serve`)
and, in polling mode, the polling relay (`relay outbox poll`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).with_name("outbox-relay.json")
DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
TOPIC = 'topic=~"$topic"'
WF = 'workflow=~"$workflow"'


class Layout:
    """Panels left to right on a 24-column grid; a row panel starts a new line."""

    def __init__(self) -> None:
        self.panels: list[dict] = []
        self.x = self.y = self.line_h = 0

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append({"type": "row", "title": title, "collapsed": False, "panels": [],
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}})
        self.y += 1

    def add(self, panel: dict, w: int, h: int) -> None:
        if self.x + w > 24:
            self._newline()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.line_h = max(self.line_h, h)

    def _newline(self) -> None:
        self.y += self.line_h
        self.x = self.line_h = 0


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> dict:
    return {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto", "refId": ref, "range": not instant,
            "instant": instant}


def targets(*pairs: tuple[str, str], instant: bool = False) -> list[dict]:
    return [target(expr, legend, chr(ord("A") + i), instant) for i, (expr, legend) in enumerate(pairs)]


def thresholds(*steps: tuple[float | None, str]) -> dict:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for value, color in steps]}


def timeseries(title: str, description: str, *pairs: tuple[str, str], unit: str = "short",
               stack: bool = False, steps: dict | None = None, mappings: list | None = None) -> dict:
    custom: dict = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10 if stack else 0, "showPoints": "never",
                    "spanNulls": False, "stacking": {"mode": "normal" if stack else "none", "group": "A"}}
    if steps is not None:
        custom["thresholdsStyle"] = {"mode": "line"}
    return {"type": "timeseries", "title": title, "description": description, "datasource": DS,
            "targets": targets(*pairs),
            "fieldConfig": {"defaults": {"unit": unit, "custom": custom, "mappings": mappings or [],
                                         "thresholds": steps or thresholds((None, "green"))},
                            "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "bottom", "showLegend": True,
                                   "calcs": ["lastNotNull", "max"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def stat(title: str, description: str, expr: str, *, unit: str = "short", steps: dict | None = None,
         mappings: list | None = None, legend: str = "") -> dict:
    return {"type": "stat", "title": title, "description": description, "datasource": DS,
            "targets": targets((expr, legend), instant=True),
            "fieldConfig": {"defaults": {"unit": unit, "mappings": mappings or [],
                                         "thresholds": steps or thresholds((None, "green"))},
                            "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "background", "graphMode": "none", "justifyMode": "auto",
                        "orientation": "auto", "textMode": "auto", "wideLayout": True}}


def state_timeline(title: str, description: str, pairs: list[tuple[str, str]], mappings: list, steps: dict) -> dict:
    return {"type": "state-timeline", "title": title, "description": description, "datasource": DS,
            "targets": targets(*pairs),
            "fieldConfig": {"defaults": {"mappings": mappings, "thresholds": steps,
                                         "color": {"mode": "thresholds"},
                                         "custom": {"fillOpacity": 80, "lineWidth": 0}},
                            "overrides": []},
            "options": {"showValue": "never", "mergeValues": True, "rowHeight": 0.9,
                        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "single", "sort": "none"}}}


def values(*pairs: tuple[int, str, str]) -> list[dict]:
    """Value mappings: (value, text, color)."""
    return [{"type": "value", "options": {str(v): {"text": text, "color": color, "index": i}}}
            for i, (v, text, color) in enumerate(pairs)]


def quantile(q: float, metric: str, by: str, selector: str = "", window: str = RATE) -> str:
    return (f"histogram_quantile({q}, sum by ({by}, le) "
            f"(rate({metric}_bucket{{{selector}}}[{window}])))")


def build() -> dict:
    g = Layout()
    up_down = values((1, "UP", "green"), (0, "DOWN", "red"))
    running = values((1, "RUNNING", "green"), (0, "NOT RUNNING", "red"))
    yes_no = values((1, "yes", "green"), (0, "no", "red"))

    # --- the publishing half: outbox -> Kafka ------------------------------------------------------
    g.row("Outbox -> Kafka (outbox monitor: relay outbox stats --serve)")
    g.add(stat("Unpublished rows", "Rows not yet in Kafka: after the connector's stored position (CDC) or unmarked "
               "(polling relay).", "max(relay_outbox_unpublished_rows)",
               steps=thresholds((None, "green"), (1000, "orange"), (10000, "red"))), 4, 4)
    g.add(stat("Oldest unpublished", "Age of the oldest row not yet in Kafka (alert RelayOutboxOldestUnpublished).",
               "max(relay_outbox_oldest_unpublished_age_seconds)", unit="s",
               steps=thresholds((None, "green"), (60, "orange"), (300, "red"))), 4, 4)
    g.add(stat("Slot retained WAL", "WAL the replication slot pins (alert RelaySlotRetainedWalHigh).",
               "max(relay_outbox_slot_retained_wal_bytes)", unit="bytes",
               steps=thresholds((None, "green"), (1024**3, "orange"), (3 * 1024**3, "red"))), 4, 4)
    g.add(stat("Connector", "1 while the connector and all its tasks are RUNNING in Kafka Connect (the monitor's "
               "view; Connect's per-task states are in `relay connectors status`).",
               "min(relay_outbox_connector_running)", mappings=running,
               steps=thresholds((None, "red"), (1, "green"))), 3, 4)
    g.add(stat("Slot streaming", "1 while Debezium reads from the replication slot.",
               "min(relay_outbox_slot_active)", mappings=yes_no, steps=thresholds((None, "red"), (1, "green"))), 3, 4)
    g.add(stat("Slot healthy", "1 while the slot exists with wal_status reserved or extended.",
               "min(relay_outbox_slot_healthy)", mappings=yes_no, steps=thresholds((None, "red"), (1, "green"))),
          3, 4)
    g.add(stat("Problems", "Problems the monitor found; `relay outbox stats` names each with the action to take.",
               "max(relay_outbox_problems)", steps=thresholds((None, "green"), (1, "red"))), 3, 4)
    g.add(timeseries("Outbox lag", "Rows waiting for Kafka, rows after the connector's stored position (CDC), "
                     "rows the polling relay gave up on.",
                     ("max(relay_outbox_unpublished_rows)", "unpublished rows"),
                     ("max(relay_outbox_rows_after_cdc_position)", "rows after the connector's position"),
                     ("max(relay_outbox_terminal_rows)", "terminal rows (polling relay gave up)")), 8, 8)
    g.add(timeseries("Oldest unpublished age and CDC position age",
                     "Age of the oldest unpublished row; seconds since the commit of the connector's stored position "
                     "(heartbeats keep it small while Debezium streams).",
                     ("max(relay_outbox_oldest_unpublished_age_seconds)", "oldest unpublished row"),
                     ("max(relay_outbox_cdc_position_age_seconds)", "connector position age"), unit="s",
                     steps=thresholds((None, "green"), (120, "orange"), (900, "red"))), 8, 8)
    g.add(timeseries("Replication slot retained WAL", "WAL the slot keeps; at max_slot_wal_keep_size Postgres "
                     "invalidates the slot and events can be lost (docs/operations.md).",
                     ("max(relay_outbox_slot_retained_wal_bytes)", "retained WAL"), unit="bytes",
                     steps=thresholds((None, "green"), (1024**3, "orange"), (3 * 1024**3, "red"))), 8, 8)
    g.add(state_timeline("Connector and slot state", "Connector (and its tasks) RUNNING, slot streaming, slot "
                         "healthy, as the monitor saw them.",
                         [("min(relay_outbox_connector_running)", "connector"),
                          ("min(relay_outbox_slot_active)", "slot streaming"),
                          ("min(relay_outbox_slot_healthy)", "slot healthy")],
                         yes_no, thresholds((None, "red"), (1, "green"))), 12, 6)
    g.add(timeseries("Polling relay (relay outbox poll)", "Rows published and marked, failed publish attempts, "
                     "rows that became terminal; only in polling mode.",
                     (f"sum(rate(relay_poller_published_total[{RATE}]))", "published / s"),
                     (f"sum(rate(relay_poller_publish_failures_total[{RATE}]))", "failed attempts / s"),
                     (f"sum(rate(relay_poller_terminal_total[{RATE}]))", "terminal / s"),
                     (f"sum(rate(relay_poller_batches_total[{RATE}]))", "batches / s"), unit="ops"), 12, 6)

    # --- workers ------------------------------------------------------------------------------------
    g.row("Workers (relay worker)")
    g.add(state_timeline("Scrape targets", "Prometheus' `up` for every relay process (alert RelayTargetDown).",
                         [('up{job=~"relay-.*"}', "{{job}} {{instance}}")], up_down,
                         thresholds((None, "red"), (1, "green"))), 8, 7)
    g.add(timeseries("Events handled / s", "Handler returned, by source topic (retry stages are their own topics).",
                     (f"sum by (topic) (rate(relay_events_handled_total{{{TOPIC}}}[{RATE}]))", "{{topic}}"),
                     unit="ops", stack=True), 8, 7)
    g.add(timeseries("Consumer lag (records)", "Records behind the high watermark after the last handled one, per "
                     "topic (max over workers per partition). A record waiting in a retry stage counts there "
                     "(alert RelayConsumerLagGrowing).",
                     (f"sum by (topic) (max by (topic, partition) (relay_consumer_lag{{{TOPIC}}}))", "{{topic}}")),
          8, 7)
    g.add(timeseries("Handler latency", "p50 and p99 of the handler's run time (a batch handler: per call).",
                     (quantile(0.5, "relay_handler_seconds", "topic", TOPIC), "p50 {{topic}}"),
                     (quantile(0.99, "relay_handler_seconds", "topic", TOPIC), "p99 {{topic}}"), unit="s"), 8, 7)
    g.add(timeseries("Handler errors and retries / s", "Handler exceptions by retriable, records sent to a retry "
                     "stage by stage.",
                     (f"sum by (topic, retriable) (rate(relay_handler_errors_total{{{TOPIC}}}[{RATE}]))",
                      "errors {{topic}} retriable={{retriable}}"),
                     (f"sum by (topic, stage) (rate(relay_retries_total{{{TOPIC}}}[{RATE}]))",
                      "retry stage {{stage}} {{topic}}"), unit="ops"), 8, 7)
    g.add(timeseries("Dead letters / s", "Records sent to the dead-letter topic, by source topic and reason "
                     "(alert RelayDeadLettersGrowing; `relay dlq` to inspect and redrive).",
                     (f"sum by (topic, reason) (rate(relay_dead_lettered_total{{{TOPIC}}}[{RATE}]))",
                      "{{topic}} {{reason}}"), unit="ops",
                     steps=thresholds((None, "green"), (0.001, "red"))), 8, 7)
    g.add(timeseries("Parked keys", "Keys whose later events wait behind a record in a retry stage, per worker "
                     "(alert RelayKeysParked).",
                     ("sum by (instance) (relay_parked_keys)", "{{instance}}")), 8, 7)
    g.add(state_timeline("Circuit breaker", "The handler circuit per topic: closed, open (consumption paused), "
                         "half-open (one probe record). Alert RelayCircuitOpen.",
                         [(f"max by (topic) (relay_circuit_state{{{TOPIC}}})", "{{topic}}")],
                         values((0, "closed", "green"), (1, "open", "red"), (2, "half-open", "orange")),
                         thresholds((None, "green"), (1, "red"), (2, "orange"))), 8, 7)
    g.add(timeseries("Duplicates, ignored, recovered / s", "Deliveries the inbox skipped, events of types the "
                     "consumer does not handle, records read back after an offset hole, partitions sought back "
                     "by the watchdog.",
                     (f"sum by (topic) (rate(relay_inbox_duplicates_total{{{TOPIC}}}[{RATE}]))",
                      "duplicates {{topic}}"),
                     (f"sum by (topic) (rate(relay_events_ignored_total{{{TOPIC}}}[{RATE}]))", "ignored {{topic}}"),
                     (f"sum by (topic) (rate(relay_skipped_records_recovered_total{{{TOPIC}}}[{RATE}]))",
                      "recovered {{topic}}"),
                     (f"sum by (topic) (rate(relay_partitions_unstalled_total{{{TOPIC}}}[{RATE}]))",
                      "unstalled partitions {{topic}}"), unit="ops"), 8, 7)
    g.add(timeseries("Postgres-inbox batch size", "Records committed per Postgres-inbox transaction (p50, p99).",
                     (quantile(0.5, "relay_batch_records", "topic", TOPIC), "p50 {{topic}}"),
                     (quantile(0.99, "relay_batch_records", "topic", TOPIC), "p99 {{topic}}")), 8, 7)

    # --- sagas --------------------------------------------------------------------------------------
    g.row("Sagas (saga coordinators)")
    g.add(stat("Runs in compensation_failed", "The manual queue: runs whose undo failed and that wait for an "
               "operator (alert RelaySagaCompensationFailed; `relay saga` to act on them).",
               f'sum(relay_saga_runs{{state="compensation_failed",{WF}}})',
               steps=thresholds((None, "green"), (1, "red"))), 4, 7)
    g.add(timeseries("Runs started and ended / s", "From the timeline: `started`, and `run <status>` as each run "
                     "ends (completed, compensated, compensation_failed, failed, cancelled).",
                     (f'sum by (workflow) (rate(relay_saga_transitions_total{{outcome="started",{WF}}}[{RATE}]))',
                      "started {{workflow}}"),
                     (f'sum by (workflow, outcome) (rate(relay_saga_transitions_total{{outcome=~"run .+",{WF}}}'
                      f"[{RATE}]))", "{{outcome}} {{workflow}}"), unit="ops"), 10, 7)
    g.add(timeseries("Runs not over, by state", "Runs that can still move (pending, running, awaiting_approval, "
                     "compensating) and the manual queue (compensation_failed), refreshed every few seconds.",
                     (f"sum by (workflow, state) (relay_saga_runs{{{WF}}})", "{{state}} {{workflow}}"),
                     stack=True), 10, 7)
    g.add(timeseries("Step latency", "From a step's last dispatch to its success (p50, p95).",
                     (quantile(0.5, "relay_saga_step_seconds", "workflow, step", WF), "p50 {{workflow}}/{{step}}"),
                     (quantile(0.95, "relay_saga_step_seconds", "workflow, step", WF), "p95 {{workflow}}/{{step}}"),
                     unit="s"), 8, 7)
    g.add(timeseries("Approval wait", "From an approval's request to its decision, by kind (step: an approval "
                     "step; gate: the policy gate's request for a command); p50 and p95 over 1 h.",
                     (quantile(0.5, "relay_saga_approval_wait_seconds", "kind", WF, "1h"), "p50 {{kind}}"),
                     (quantile(0.95, "relay_saga_approval_wait_seconds", "kind", WF, "1h"), "p95 {{kind}}"),
                     unit="s"), 8, 7)
    g.add(timeseries("Oldest run per state", "Since the least recently changed run of each state changed "
                     "(alert RelaySagaRunsStuck).",
                     (f"max by (workflow, state) (relay_saga_oldest_run_seconds{{{WF}}})", "{{state}} {{workflow}}"),
                     unit="s"), 8, 7)
    g.add(timeseries("Compensation / s", "Compensations dispatched, done, failed, skipped, by workflow.",
                     (f'sum by (workflow, outcome) (rate(relay_saga_transitions_total{{outcome=~"compensat.*",{WF}}}'
                      f"[{RATE}]))", "{{outcome}} {{workflow}}"), unit="ops"), 12, 7)
    g.add(timeseries("Commands sent again / s", "Saga commands and compensations sent again (attempt > 1), and "
                     "step attempts that failed or timed out.",
                     (f"sum by (workflow) (rate(relay_saga_retries_total{{{WF}}}[{RATE}]))", "resent {{workflow}}"),
                     (f'sum by (workflow, outcome) (rate(relay_saga_transitions_total{{outcome=~"attempt .+",{WF}}}'
                      f"[{RATE}]))", "{{outcome}} {{workflow}}"), unit="ops"), 12, 7)

    for i, panel in enumerate(g.panels, start=1):
        panel["id"] = i
    return {
        "title": "outbox-relay",
        "uid": "outbox-relay",
        "description": "Transactional outbox -> Debezium/Kafka Connect -> Kafka -> workers and saga coordinators. "
                       "Alerts: deploy/prometheus/outbox-relay-rules.yaml; runbook: docs/operations.md.",
        "tags": ["outbox-relay", "kafka", "debezium"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "links": [],
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"}]},
        "templating": {"list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": [], "includeAll": False,
             "multi": False},
            _variable("topic", "Topic", "label_values(relay_consumer_lag, topic)"),
            _variable("workflow", "Workflow", "label_values(relay_saga_runs, workflow)"),
        ]},
        "panels": g.panels,
    }


def _variable(name: str, label: str, query: str) -> dict:
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": query, "refId": f"{name}-values", "qryType": 1}, "definition": query,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "includeAll": True, "allValue": ".*", "multi": True, "refresh": 2, "sort": 1, "hide": 0,
            "regex": "", "options": []}


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


if __name__ == "__main__":
    text = render()
    if sys.argv[1:] == ["--check"]:
        if OUT.read_text() != text:
            sys.exit(f"{OUT} is not what {Path(__file__).name} writes: run it")
        sys.exit(0)
    OUT.write_text(text)
    print(f"wrote {OUT}")
