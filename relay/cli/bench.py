"""`relay bench`: see relay/bench/suite.py."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import typer

from relay.cli.common import handles_errors, say, settings
from relay.extras import require


@handles_errors
def bench(
    scenario: list[str] = typer.Option([], "--scenario", "-s", help="run only these (repeatable); default: all"),
    duration: float = typer.Option(15.0, min=1, help="seconds each repetition aims at"),
    reps: int = typer.Option(3, min=1, max=10, help="repetitions per scenario (the median is reported)"),
    out: Path = typer.Option(Path("bench-results"), help="directory for results.json, table.txt, PNG plots"),
) -> None:
    """Benchmarks next to same-run baselines: prints a table (figure, baseline, ratio, target) and
    writes results.json and plots. Exit 1 on an error or a lost event, never on a figure."""
    require("bench", by="relay bench")  # workers, RocksDB, the stack's Postgres, plots: not 15 minutes in
    from relay.bench.report import plot, table, write_json
    from relay.bench.suite import SCENARIOS, Bench

    names = scenario or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise typer.BadParameter(f"--scenario {', '.join(unknown)}: expected one of {', '.join(SCENARIOS)}")
    s = settings()
    out.mkdir(parents=True, exist_ok=True)
    started, t0 = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.monotonic()
    b = Bench(s, duration=duration, reps=reps, say=say)
    runs = []
    for name in names:
        say(f"== {name}")
        try:
            runs.append(SCENARIOS[name](b))
        except Exception as exc:  # noqa: BLE001 - reported in the table and the exit code
            from relay.bench.report import ScenarioRun

            runs.append(ScenarioRun(name, name, error=f"{type(exc).__name__}: {exc}"))
            say(f"[{name}] failed: {exc}")
    text = table(runs)
    typer.echo(text)
    (out / "table.txt").write_text(text + "\n")
    write_json(out / "results.json", runs, {"duration_s": duration, "reps": reps, "partitions": s.topic_partitions},
               started, time.monotonic() - t0)
    plots = plot(out, runs)
    if not plots:
        say("no plots: no scenario produced a figure")
    say(f"wrote {out / 'results.json'}, {out / 'table.txt'}" + "".join(f", {p}" for p in plots))
    sys.exit(1 if any(r.error or r.lost for r in runs) else 0)
