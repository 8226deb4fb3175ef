"""`relay bench` end to end on the real stack, as small as it goes: exit 0, a table, results.json
with figures next to baselines, and a plot. (No figure is judged: timings never fail tests.)"""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_relay_bench_writes_table_json_and_plots(stack, settings, tmp_path):
    out = tmp_path / "bench"
    run = subprocess.run([sys.executable, "-m", "relay", "bench", "-s", "postgres", "-s", "poller", "-s", "kafka",
                          "--duration", "1", "--reps", "1", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "relay throughput" in run.stdout and "commit rate C" in run.stdout
    doc = json.loads((out / "results.json").read_text())
    by = {s["name"]: s for s in doc["scenarios"]}
    assert set(by) == {"postgres", "poller", "kafka"} and not any(s["error"] for s in by.values())
    [relay] = [f for f in by["poller"]["figures"] if f["name"] == "relay throughput"]
    assert relay["baseline_name"] == "C" and relay["ratio"] > 0 and by["poller"]["lost"] == 0
    assert (out / "table.txt").exists() and (out / "ratios.png").stat().st_size > 0
