"""`relay stack up|down|status`: the native dev stack."""

from __future__ import annotations

import sys
import time

import typer

from relay.cli.common import JSON_OPTION, emit_json, handles_errors, say, settings
from relay.extras import require
from relay.stack import Stack

app = typer.Typer(help="Start, stop and inspect the native dev stack (Postgres, Kafka, Connect).",
                  no_args_is_help=True)

_EVENTS = {
    "fetching": "checking Kafka/Debezium jars (Maven Central, cached in .cache/)",
    "fetched": "jars fetched", "cached": "jars cached",
    "starting": "starting", "waiting": "waiting for a previous start", "already-running": "already running",
    "ready": "ready", "stopped": "stopped",
}


def _progress(part: str, event: str, t: float) -> None:
    say(f"[{t:6.1f}s] {part:<9} {_EVENTS.get(event, event)}")


@app.command()
@handles_errors
def up(json_out: bool = JSON_OPTION) -> None:
    """Start every part (idempotent) and wait until each serves clients."""
    require("stack", by="relay stack up")  # before minutes of jar downloads, not after
    stack = Stack(settings())
    t0 = time.monotonic()
    timings = stack.up(_progress)
    total = time.monotonic() - t0
    if json_out:
        emit_json({"seconds": round(total, 2), "parts": timings,
                   **{k: v.as_dict() for k, v in stack.status().items()}})
    else:
        say(f"stack ready in {total:.1f} s")
        _print_status(stack)


@app.command()
@handles_errors
def down(json_out: bool = JSON_OPTION) -> None:
    """Stop every process the stack started (by pid file). Data is kept."""
    stopped = Stack(settings()).down(_progress)
    if json_out:
        emit_json({"stopped": stopped})
    elif not stopped:
        say("nothing was running")


@app.command()
@handles_errors
def clean() -> None:
    """Delete the stopped stack's data (Postgres, Kafka, Connect state, logs)."""
    for folder in Stack(settings()).clean():
        say(f"removed {folder}")


@app.command()
@handles_errors
def fetch() -> None:
    """Fetch the pinned Kafka/Connect/Debezium jars from Maven Central (cached; `up` does it too)."""
    from relay.stack.jars import ensure_jars, jars_dir

    s = settings()
    fetched = ensure_jars(s)
    say(f"jars {'fetched into' if fetched else 'already in'} {jars_dir(s)}")


@app.command()
@handles_errors
def status(json_out: bool = JSON_OPTION) -> None:
    """Each part's state, pid, address and memory; exit 1 unless all are ready."""
    stack = Stack(settings())
    states = stack.status()
    if json_out:
        emit_json({name: s.as_dict() for name, s in states.items()})
    else:
        _print_status(stack, states)
    sys.exit(0 if all(s.state == "ready" for s in states.values()) else 1)


def _print_status(stack: Stack, states=None) -> None:
    states = states or stack.status()
    for name, s in states.items():
        rss = f"{s.rss_bytes / 2**20:.0f} MiB" if s.rss_bytes else "-"
        typer.echo(f"{name:<9} {s.state:<8} pid={s.pid or '-':<8} rss={rss:<9} {s.address}")
