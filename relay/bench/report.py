"""What a benchmark run reports: figures next to the baseline measured in the same run, as ratios.

Machines are shared and noisy, so an absolute number means little; a figure always names its
baseline (measured in the same run, on the same stack) and the ratio is what is compared with
the target. Repetitions are kept raw; the reported value is their median.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path


@dataclass
class Figure:
    scenario: str
    name: str
    value: float
    unit: str
    baseline_name: str | None = None
    baseline: float | None = None
    target: float | None = None  # the ratio we aim for (ratio >= target), from the issue
    note: str = ""
    at_most: float | None = None  # an absolute target instead: value <= at_most (latency)
    at_least: float | None = None  # or value >= at_least (throughput)

    @property
    def ratio(self) -> float | None:
        return self.value / self.baseline if self.baseline else None

    @property
    def verdict(self) -> str:
        if self.target is not None and self.ratio is not None:
            return "meets" if self.ratio >= self.target else "below"
        if self.at_most is not None:
            return "meets" if self.value <= self.at_most else "below"
        if self.at_least is not None:
            return "meets" if self.value >= self.at_least else "below"
        return ""

    @property
    def target_text(self) -> str:
        if self.target is not None:
            return f">={self.target:g}"
        if self.at_most is not None:
            return f"<={self.at_most:g}"
        return "" if self.at_least is None else f">={self.at_least:g}"

    def row(self) -> dict:
        return {**asdict(self), "ratio": self.ratio, "verdict": self.verdict}


@dataclass
class ScenarioRun:
    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    repetitions: list[dict] = field(default_factory=list)  # raw numbers of every repetition
    lost: int = 0
    duplicates: int = 0
    bottleneck: str = ""
    series: dict = field(default_factory=dict)  # for plots: name -> list of numbers
    error: str | None = None


def median(values: list[float]) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def machine() -> dict:
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "memory_bytes": mem, "platform": platform.platform(),
            "python": sys.version.split()[0]}


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for dist in ("confluent-kafka", "faust-streaming", "aiokafka", "psycopg", "fastavro", "rocksdict"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def table(runs: list[ScenarioRun]) -> str:
    """A plain-text table: figure, value, baseline, ratio, target."""
    head = f"{'scenario':<10} {'figure':<38} {'value':>12} {'baseline':>28} {'ratio':>7} {'target':>7}"
    lines = [head, "-" * len(head)]
    for run in runs:
        if run.error:
            lines.append(f"{run.name:<10} ERROR: {run.error}")
            continue
        for f in run.figures:
            base = "" if f.baseline is None else f"{f.baseline_name} {f.baseline:,.0f}"
            ratio = "" if f.ratio is None else f"{f.ratio:.2f}"
            target = f.target_text
            lines.append(f"{run.name:<10} {f.name:<38} {f.value:>10,.1f} {f.unit:<1} {base:>28} {ratio:>7} {target:>7}")
        if run.lost or run.duplicates:
            lines.append(f"{run.name:<10} lost {run.lost}, duplicates {run.duplicates}")
    return "\n".join(lines)


def write_json(path: Path, runs: list[ScenarioRun], settings: dict, started: str, seconds: float) -> None:
    doc = {"started": started, "seconds": round(seconds, 1), "machine": machine(), "versions": versions(),
           "settings": settings,
           "scenarios": [{"name": r.name, "title": r.title, "error": r.error, "lost": r.lost,
                          "duplicates": r.duplicates, "bottleneck": r.bottleneck,
                          "figures": [f.row() for f in r.figures], "repetitions": r.repetitions}
                         for r in runs]}
    path.write_text(json.dumps(doc, indent=2, default=str))


def plot(out: Path, runs: list[ScenarioRun]) -> list[Path]:
    """PNG plots (matplotlib): ratios per figure, and latency CDFs of the scenarios that have them."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    figures = [f for r in runs for f in r.figures if f.ratio is not None]
    if figures:
        fig, ax = plt.subplots(figsize=(9, 0.45 * len(figures) + 1.5))
        labels = [f"{f.scenario}: {f.name}" for f in figures]
        ratios = [f.ratio or 0.0 for f in figures]  # never None: filtered above
        ax.barh(labels, ratios, color=["#4c72b0" if f.verdict != "below" else "#dd8452" for f in figures])
        for i, f in enumerate(figures):
            if f.target is not None:
                ax.plot([f.target, f.target], [i - 0.4, i + 0.4], color="black")
        ax.set_xlabel("ratio to the same-run baseline (black: target)")
        ax.invert_yaxis()
        written.append(_save(plt, fig, out / "ratios.png"))
    flows = [(r.name, name, v) for r in runs for name, v in r.series.items() if name.startswith("throughput") and v]
    if flows:
        fig, ax = plt.subplots(figsize=(9, 5))
        for scenario, name, points in flows:
            ax.plot([t for t, _ in points], [rate for _, rate in points], label=f"{scenario}: {name}")
        ax.set_xlabel("seconds since the run's first commit")
        ax.set_ylabel("events handled per second (0.5 s buckets)")
        ax.grid(True, alpha=0.3)
        ax.legend()
        written.append(_save(plt, fig, out / "throughput.png"))
    curves = [(r.name, name, sorted(v)) for r in runs for name, v in r.series.items() if name.startswith("latency")]
    if curves:
        fig, ax = plt.subplots(figsize=(8, 5))
        for scenario, name, values in curves:
            n = len(values)
            ax.plot(values, [(i + 1) / n for i in range(n)], label=f"{scenario}: {name}")
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms, log scale)")
        ax.set_ylabel("fraction of events")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        written.append(_save(plt, fig, out / "latency_cdf.png"))
    return written


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
