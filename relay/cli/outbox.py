"""`relay outbox migrate`."""

from __future__ import annotations

import psycopg
import typer

from relay.cli.common import JSON_OPTION, emit_json, handles_errors, say, settings
from relay.errors import DatabaseError
from relay.outbox import ensure_cdc_access, migrate as run_migrations

app = typer.Typer(help="The outbox table.", no_args_is_help=True)


@app.command()
@handles_errors
def migrate(json_out: bool = JSON_OPTION) -> None:
    """Apply pending schema migrations; create the publication Debezium reads (idempotent)."""
    s = settings()
    try:
        with psycopg.connect(s.dsn) as conn:
            applied = run_migrations(conn)
            ensure_cdc_access(conn, publication=s.publication, cdc_role=s.pg_cdc_user)
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"Postgres unreachable ({s.host}:{s.pg_port}): {exc}", retriable=True) from None
    names = [f"{m.version:04d}_{m.name}" for m in applied]
    if json_out:
        emit_json({"applied": names})
    else:
        say(f"applied {', '.join(names)}" if names else "outbox schema up to date")
