"""Every metric the Grafana dashboard and the alerts use (deploy/) is served by a real process of ours.

On the session stack: a saga coordinator and its participants (`relay worker`, consumer and saga
metrics), the outbox monitor (`relay outbox stats --serve`) and a polling relay on its own database
(`relay outbox poll`), each on a free port. Two saga runs go through (one compensated), then each
/metrics is scraped. A labelled metric has no sample until its first use, but prometheus_client
prints its `# HELP`/`# TYPE` lines from the start: a name counts as served when a sample or its TYPE
line is there. The samples the runs must have made are checked too. Bounded: about 60 s, every
process stopped by its pid at the end.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time
import urllib.request

import psycopg
import pytest

from relay.saga.start import start
from relay.stack.process import ManagedProcess
from tests.support.relays import poller_relay
from tests.support.saga_checks import order_saga_workers, wait_ended
from tests.unit.test_dashboards import EXPRESSIONS, SYNTHETIC, _name, as_sent, selectors

pytestmark = pytest.mark.integration

BUDGET_S = 80
TYPE_LINE = re.compile(r"^# TYPE (\S+) (\w+)$", re.MULTILINE)
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? \S+", re.MULTILINE)
SAMPLE_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)$", re.MULTILINE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def used_names() -> set[str]:
    import promql_parser

    return {_name(sel) for expr in EXPRESSIONS.values() for sel in selectors(promql_parser.parse(as_sent(expr)))}


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def served(text: str) -> set[str]:
    """Series names a scrape shows: its samples, and what each TYPE line declares."""
    names = {m.group(1) for m in SAMPLE.finditer(text)}
    for name, kind in TYPE_LINE.findall(text):
        if kind == "counter":
            names |= {name, name if name.endswith("_total") else name + "_total"}
        elif kind == "histogram":
            names |= {name + "_bucket", name + "_sum", name + "_count"}
        elif kind == "summary":
            names |= {name, name + "_sum", name + "_count"}
        else:
            names.add(name)
    return names


def has(text: str, name: str, value: str | None = None, **labels: str) -> bool:
    """Whether ``text`` has a sample of ``name`` with these labels (and this value)."""
    for m in SAMPLE_LINE.finditer(text):
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if m.group(1) == name and labels.items() <= found.items() and value in (None, m.group(3)):
            return True
    return False


def wait_scrape(port: int, what: str, deadline: float, proc_log) -> str:
    while True:
        try:
            return scrape(port)
        except OSError:
            assert time.monotonic() < deadline, f"{what}: no /metrics on port {port} in time\n{proc_log()[-3000:]}"
            time.sleep(0.5)


def test_every_metric_of_the_dashboard_and_the_alerts_is_served(stack, settings, unique):
    deadline = time.monotonic() + BUDGET_S
    wanted = used_names() - set(SYNTHETIC)
    wf = f"scrape{unique}"
    ports = {"coordinator": free_port(), "monitor": free_port(), "poller": free_port()}
    coordinator, participants = order_saga_workers(settings, wf, unique,
                                                   RELAY_WORKER_METRICS_PORT=str(ports["coordinator"]))
    monitor = ManagedProcess(f"scrape-monitor-{unique}", settings.stack_dir / "pids" / f"scrape-monitor-{unique}.pid",
                             settings.stack_dir / "logs" / f"scrape-monitor-{unique}.log")
    poller = poller_relay(stack, settings, RELAY_POLLER_METRICS_PORT=str(ports["poller"]))
    try:
        coordinator.start()
        participants.start()
        monitor.start([sys.executable, "-m", "relay", "outbox", "stats", "--serve", "--interval", "1"],
                      env={**os.environ, "RELAY_MONITOR_METRICS_PORT": str(ports["monitor"])})
        poller.start()

        def monitor_log() -> str:
            return monitor.log_file.read_text(errors="replace") if monitor.log_file.exists() else ""

        wait_scrape(ports["coordinator"], "saga coordinator", deadline, coordinator.log)
        with psycopg.connect(settings.dsn) as conn:
            for i, fail in enumerate((False, True)):
                with conn.transaction():
                    start(conn, wf, input={"amount": i, "fail": fail}, idempotency_key=f"s{i}", business_key=f"s{i}")
        status = wait_ended(settings.dsn, wf, 2, max(1.0, deadline - time.monotonic() - 15))
        assert sorted(status.values()) == ["compensated", "completed"], coordinator.log()[-3000:]

        texts = {"coordinator": wait_scrape(ports["coordinator"], "saga coordinator", deadline, coordinator.log),
                 "monitor": wait_scrape(ports["monitor"], "outbox monitor", deadline, monitor_log),
                 "poller": wait_scrape(ports["poller"], "polling relay", deadline, lambda: "")}
        # the saga gauges are refreshed every few seconds, the monitor's every second after its first check
        while not (has(texts["coordinator"], "relay_saga_runs", workflow=wf)
                   and has(texts["monitor"], "relay_outbox_connector_running", "1.0")):
            assert time.monotonic() < deadline, ("no relay_saga_runs of the workflow, or the monitor does not see "
                                                 f"the connector running\n{monitor_log()[-2000:]}")
            time.sleep(1)
            texts["coordinator"], texts["monitor"] = scrape(ports["coordinator"]), scrape(ports["monitor"])

        seen = set().union(*(served(t) for t in texts.values()))
        missing = sorted(wanted - seen)
        assert not missing, f"used by deploy/ but served by none of {sorted(texts)}: {missing}"

        coord = texts["coordinator"]
        for name, value, labels in (
                ("relay_saga_transitions_total", None, {"workflow": wf, "outcome": "started"}),
                ("relay_saga_transitions_total", None, {"workflow": wf, "outcome": "run completed"}),
                ("relay_saga_transitions_total", None, {"workflow": wf, "outcome": "run compensated"}),
                ("relay_saga_runs", "0.0", {"workflow": wf, "state": "compensation_failed"}),
                ("relay_saga_step_seconds_bucket", None, {"workflow": wf}),
                ("relay_events_handled_total", None, {}), ("relay_consumer_lag", None, {}),
                ("relay_circuit_state", None, {}), ("relay_parked_keys", None, {})):
            assert has(coord, name, value, **labels), f"no sample {name} {labels} on the coordinator"
        for gauge in ("relay_outbox_slot_retained_wal_bytes", "relay_outbox_oldest_unpublished_age_seconds",
                      "relay_outbox_slot_healthy", "relay_outbox_problems"):
            assert has(texts["monitor"], gauge), f"no sample of {gauge}"
        assert has(texts["poller"], "relay_poller_batches_total")
        assert time.monotonic() < deadline + 5, "over the time budget"
    finally:
        coordinator.stop(grace_s=10)
        participants.stop(grace_s=10)
        monitor.stop(grace_s=10)
        poller.stop()
