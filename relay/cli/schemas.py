"""`relay schemas list|check`: the declared Avro schemas of outbox events (schemas/ in the repo)."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from relay.cli.common import JSON_OPTION, emit_json, handles_errors, say
from relay.config import project_root
from relay.schemas import SchemaRegistry

app = typer.Typer(help="Declared Avro schemas of outbox events (schemas/<aggregatetype>/<EventType>/v<N>.avsc).",
                  no_args_is_help=True)

ROOT_OPTION = typer.Option(None, "--root", file_okay=False,
                           help="schema folder (default: <project>/schemas)")


class Mode(str, Enum):
    backward = "backward"
    forward = "forward"
    full = "full"


def _registry(root: Path | None) -> SchemaRegistry:
    return SchemaRegistry.load(root if root is not None else project_root() / "schemas")


@app.command("list")
@handles_errors
def list_(root: Optional[Path] = ROOT_OPTION, json_out: bool = JSON_OPTION) -> None:
    """Every event type with a declared schema: its versions, the latest one and its fingerprint."""
    reg = _registry(root)
    rows = []
    for aggregatetype, type in reg.event_types():
        versions = reg.versions(aggregatetype, type)
        latest = versions[-1]
        rows.append({"aggregatetype": aggregatetype, "type": type, "versions": [v.version for v in versions],
                     "latest": latest.ref, "fingerprint": latest.fingerprint, "path": str(latest.path)})
    if json_out:
        emit_json({"root": str(reg.root), "event_types": rows})
        return
    if not rows:
        say(f"no schemas declared under {reg.root} (every event type is schemaless JSON)")
    for row in rows:
        shown = ", ".join(f"v{n}" for n in row["versions"])
        typer.echo(f"{row['aggregatetype']}/{row['type']}: {shown}; latest {row['latest']} "
                   f"(fingerprint {row['fingerprint']})")


@app.command()
@handles_errors
def check(
    mode: Mode = typer.Option(Mode.backward, "--mode", help="backward: the new version reads data written "
                              "with the old one; forward: the old reads the new; full: both"),
    root: Optional[Path] = ROOT_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Check every consecutive version pair; exit 1 and list every problem when any is incompatible."""
    reg = _registry(root)
    problems = reg.check(mode.value)
    pairs = sum(max(len(reg.versions(a, t)) - 1, 0) for a, t in reg.event_types())
    if json_out:
        emit_json({"root": str(reg.root), "mode": mode.value, "ok": not problems,
                   "pairs_checked": pairs, "problems": problems})
    else:
        for p in problems:
            typer.echo(f"INCOMPATIBLE: {p}")
        say(f"{mode.value} compatibility: {len(problems)} problem(s) in {pairs} version pair(s) under {reg.root}")
    sys.exit(1 if problems else 0)
