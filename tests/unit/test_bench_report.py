"""Bench reporting: ratios against same-run baselines, verdicts, the table and results.json."""

import json

from relay.bench.report import Figure, ScenarioRun, median, table, write_json


def test_ratio_and_verdict_follow_the_baseline_and_target():
    f = Figure("cdc", "relay throughput", 850.0, "ev/s", "C", 1000.0, 0.85)
    assert f.ratio == 0.85 and f.verdict == "meets"
    assert Figure("cdc", "x", 800.0, "ev/s", "C", 1000.0, 0.85).verdict == "below"
    assert Figure("kafka", "P", 1.0, "ev/s").ratio is None and Figure("kafka", "P", 1.0, "ev/s").verdict == ""


def test_median_ignores_missing_values():
    assert median([3.0, None, 1.0, 2.0]) == 2.0
    assert median([]) != median([])  # nan


def test_table_shows_errors_losses_and_ratios(tmp_path):
    runs = [ScenarioRun("cdc", "t", [Figure("cdc", "relay throughput", 500.0, "ev/s", "C", 1000.0, 0.85)], lost=2),
            ScenarioRun("kafka", "t", error="KafkaUnavailable: down")]
    text = table(runs)
    assert "0.50" in text and ">=0.85" in text and "lost 2" in text and "ERROR: KafkaUnavailable" in text
    write_json(tmp_path / "r.json", runs, {"reps": 3}, "2026-11-23T00:00:00+00:00", 12.3)
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["scenarios"][0]["figures"][0]["ratio"] == 0.5 and doc["scenarios"][1]["error"]
    assert doc["machine"]["cpus"] and "confluent-kafka" in doc["versions"]
