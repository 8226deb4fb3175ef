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


def test_exact_percentiles_and_per_second_buckets():
    from relay.bench.pipeline import per_second, percentiles

    p = percentiles([float(v) for v in range(1, 1001)])
    assert (p["p50"], p["p99"], p["p999"], p["max"], p["n"]) == (500.0, 990.0, 999.0, 1000.0, 1000)
    assert percentiles([])["n"] == 0
    assert per_second([0.1, 0.2, 0.6, 1.4], bucket_s=0.5) == [[0.0, 4.0], [0.5, 2.0], [1.0, 2.0]]


def test_absolute_targets_give_a_verdict():
    from relay.bench.report import Figure

    assert Figure("latency", "p99", 120.0, "ms", at_most=100).verdict == "below"
    assert Figure("latency", "p99", 80.0, "ms", at_most=100).target_text == "<=100"
    assert Figure("scaling", "ev/CPU-s", 3100.0, "ev/CPU-s", at_least=3000).verdict == "meets"
