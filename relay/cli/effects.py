"""`relay effects list [--state S]`: the side-effect records, e.g. the ambiguous ones a person must
resolve (the target could not say whether the effect happened)."""

from __future__ import annotations

import psycopg
import typer

from relay.cli.common import JSON_OPTION, emit_json, handles_errors, say, settings
from relay.errors import RelayError
from relay.governance.lifecycle import EffectState

app = typer.Typer(help="Side-effect records: one per idempotency key, with its lifecycle.", no_args_is_help=True)

LIST = """
SELECT idempotency_key, state, effect_class, target, run_id, step, attempts, left(request_hash, 12), error,
       updated_at, history
FROM effects WHERE %(state)s::text IS NULL OR state = %(state)s::text
ORDER BY updated_at DESC LIMIT %(limit)s
"""
COLUMNS = ("idempotency_key", "state", "effect_class", "target", "run_id", "step", "attempts", "request_hash",
           "error", "updated_at", "history")


@app.callback()
def _group() -> None:
    """Side-effect records: one per idempotency key, with its lifecycle."""


@app.command("list")
@handles_errors
def list_(state: str = typer.Option(None, "--state", help="only records in this state (e.g. ambiguous)"),
          limit: int = typer.Option(100, "--limit"), json_out: bool = JSON_OPTION) -> None:
    """Records, most recently changed first; each with its history of moves."""
    if state is not None and state not in {s.value for s in EffectState}:
        raise RelayError(f"--state {state!r}: expected one of {[s.value for s in EffectState]}")
    with psycopg.connect(settings().dsn) as conn:
        rows = [dict(zip(COLUMNS, r, strict=True)) for r in conn.execute(LIST, {"state": state, "limit": limit})]
    if json_out:
        emit_json([{**r, "updated_at": str(r["updated_at"])} for r in rows])
        return
    for r in rows:
        typer.echo(f"{r['idempotency_key']}  {r['state']:<12} {r['target']}  attempts {r['attempts']}  "
                   f"request {r['request_hash']}" + (f"  error: {r['error']}" if r["error"] else ""))
    say(f"{len(rows)} record(s)")
