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


@app.command()
@handles_errors
def poll(
    max_events: int = typer.Option(0, help="stop after this many published events (0: run until stopped)"),
) -> None:
    """Polling relay: publish unpublished rows (same topic/key/header contract as the CDC relay).

    Runs until SIGTERM/SIGINT. Several pollers may run at once; per-aggregate order holds.
    """
    import signal
    import threading

    from relay.metrics import PollerMetrics
    from relay.outbox.poller import PollingRelay

    s = settings()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    metrics = PollerMetrics.create()
    metrics.serve(s.host, s.poller_metrics_port)
    relay = PollingRelay(s, metrics=metrics)
    say(f"polling relay: {s.host}:{s.pg_port}/{s.pg_database} -> {s.bootstrap_servers}"
        + (f", metrics on :{s.poller_metrics_port}" if s.poller_metrics_port else ""))
    stats = relay.run(stop, max_events=max_events or None)
    say(f"published {stats.published}, failed attempts {stats.failed}, terminal {stats.terminal}")
