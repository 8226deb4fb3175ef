"""`relay outbox migrate`."""

from __future__ import annotations

from typing import Any

import typer

from relay.cli.common import JSON_OPTION, emit_json, handles_errors, say, settings
from relay.deps import connect_postgres, probe_kafka
from relay.errors import RelayError
from relay.outbox import ensure_cdc_access, migrate as run_migrations

app = typer.Typer(help="The outbox table.", no_args_is_help=True)


@app.command()
@handles_errors
def migrate(json_out: bool = JSON_OPTION) -> None:
    """Apply pending schema migrations; create the publication Debezium reads (idempotent)."""
    s = settings()
    with connect_postgres(s.dsn, autocommit=False) as conn:
        applied = run_migrations(conn, max_event_bytes=s.max_event_bytes)
        ensure_cdc_access(conn, publication=s.publication, cdc_role=s.pg_cdc_user)
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
    connect_postgres(s.dsn).close()  # fail fast, with one line, before anything is started
    unreachable = probe_kafka(s)
    if unreachable is not None:
        raise unreachable
    metrics = PollerMetrics.create()
    metrics.serve(s.host, s.poller_metrics_port)
    relay = PollingRelay(s, metrics=metrics)
    metrics.readiness.mark_ready()  # /readyz: Postgres and Kafka answered, the loop starts
    say(f"polling relay: {s.host}:{s.pg_port}/{s.pg_database} -> {s.bootstrap_servers}"
        + (f", metrics on :{s.poller_metrics_port}" if s.poller_metrics_port else ""))
    stats = relay.run(stop, max_events=max_events or None)
    say(f"published {stats.published}, failed attempts {stats.failed}, terminal {stats.terminal}")


@app.command()
@handles_errors
def stats(
    json_out: bool = JSON_OPTION,
    serve: bool = typer.Option(False, help="keep running and export the figures as Prometheus gauges"),
    interval: float = typer.Option(5.0, help="seconds between refreshes with --serve"),
) -> None:
    """Outbox backlog, replication slot (retained WAL, wal_status), connector state and problems.

    Exit 1 when a problem is found (a gap, a failed task, ...), each with the action to take.
    """
    import sys
    import time

    from relay.outbox.guardian import check

    s = settings()
    if serve:
        from relay.metrics import HealthMetrics

        metrics = HealthMetrics.create()
        metrics.serve(s.host, s.monitor_metrics_port)
        say(f"exporting outbox health on http://{s.host}:{s.monitor_metrics_port}/metrics every {interval:.0f} s")
        while True:
            metrics.update(check(s))
            metrics.readiness.mark_ready()  # /readyz: the gauges hold a first reading
            time.sleep(interval)
    health = check(s)
    if json_out:
        emit_json(health.as_dict())
    else:
        for line in describe(health, s):
            typer.echo(line)
    sys.exit(0 if health.ok else 1)


def describe(health: Any, s: Any) -> list[str]:
    """The text form of ``stats``: backlog in the active relay's terms, slot, connector, problems."""
    o, slot, lines = health.outbox, health.slot, []
    if o.get("mode") == "cdc":
        pos = health.position
        where = f"after LSN {pos.lsn_text} (committed {pos.committed_at.isoformat()})" if pos else "(position unknown)"
        lines.append(f"backlog (CDC): {o['backlog_rows'] if pos else '?'} rows committed {where}, oldest "
                     f"{o['backlog_oldest_age_s'] if o['backlog_oldest_age_s'] is not None else '-'} s")
    elif o:
        lines.append(f"backlog (polling relay): {o['backlog_rows']} unmarked rows (oldest "
                     f"{o['backlog_oldest_age_s']} s), {o['terminal_rows']} terminal")
    if slot is not None:
        lines.append(f"slot {slot.name}: " + (f"active={slot.active} wal_status={slot.wal_status} retained "
                                               f"{slot.retained_bytes} bytes" if slot.exists else "MISSING"))
    if "connect" not in health.down:
        state = health.connector["connector"]["state"] if health.connector else "ABSENT"
        lines.append(f"connector {s.connector_name}: {state}")
    for p in health.problems:
        lines.append(f"PROBLEM [{p.code}]: {p.message}\n  -> {p.action}")
    return lines


@app.command()
@handles_errors
def blocked(json_out: bool = JSON_OPTION) -> None:
    """The outbox row a failed connector task stopped on: event id, aggregate type, LSN, size and
    the root cause (exit 1 when a row blocks the pipeline, 0 when none does)."""
    import sys

    from relay.outbox.unblock import Unblocker

    found = Unblocker(settings()).locate()
    if json_out:
        emit_json(None if found is None else found.as_dict())
    else:
        say("no connector task is FAILED: nothing is blocked" if found is None else f"blocked: {found.describe()}")
    sys.exit(0 if found is None else 1)


@app.command()
@handles_errors
def unblock(
    retry: bool = typer.Option(False, "--retry", help="publish the row once its cause is fixed: raise topic "
                                                      "limits to the settings, re-apply the connector, restart"),
    dead_letter: bool = typer.Option(False, "--dead-letter", help="move the row to outbox.dlq with its reason and "
                                                                  "continue past it"),
    json_out: bool = JSON_OPTION,
) -> None:
    """Get the connector past the row it stopped on, losing nothing: --retry or --dead-letter.

    Exit 0 once the task runs past the row (RUNNING and making progress), 1 with the cause otherwise.
    """
    from relay.outbox.unblock import Unblocker

    if retry == dead_letter:
        raise RelayError("say which: --retry (publish it once the cause is fixed) or --dead-letter (move it aside)")
    worker = Unblocker(settings(), say=say)
    report = worker.retry() if retry else worker.dead_letter()
    if json_out:
        emit_json(report.as_dict())
    else:
        say(f"unblock --{report.mode}: {report.outcome}")


@app.command()
@handles_errors
def reconcile(
    since: str = typer.Option("", help="republish rows created at/after this ISO time (default: the "
                                       "connector's last stored position minus --margin)"),
    margin: float = typer.Option(60.0, help="seconds before the stored position to start from"),
    yes: bool = typer.Option(False, "--yes", help="do it (without it, only say what would happen)"),
    json_out: bool = JSON_OPTION,
) -> None:
    """Recover from a lost or dropped slot: fresh slot, republish rows since the last known position."""
    from datetime import datetime, timedelta

    from relay.connect import ConnectClient
    from relay.outbox.guardian import cdc_position
    from relay.outbox.reconcile import reconcile as run

    s = settings()
    start = datetime.fromisoformat(since) if since else None
    if not yes:
        pos = cdc_position(ConnectClient.for_settings(s), s.connector_name)
        frm = start or (pos.committed_at - timedelta(seconds=margin) if pos else None)
        say(f"would stop {s.connector_name}, drop and recreate slot {s.slot_name}, clear its offsets, republish "
            f"outbox rows created since {frm.isoformat() if frm else '(unknown: pass --since)'} and resume; "
            "add --yes to do it")
        return
    report = run(s, since=start, margin=timedelta(seconds=margin), progress=say)
    if json_out:
        emit_json(report.as_dict())
    else:
        say(f"reconciled: {report.republished} events republished since {report.since.isoformat()} "
            f"in {report.duration_s} s")


@app.command()
@handles_errors
def prune(
    older_than: str = typer.Option(..., "--older-than", help="age, e.g. 7d, 12h, 30m"),
    margin: float = typer.Option(300.0, help="seconds before the connector's stored position still kept"),
    json_out: bool = JSON_OPTION,
) -> None:
    """Delete published rows older than --older-than (unpublished and terminal rows stay)."""
    from datetime import timedelta

    from relay.connect import ConnectClient
    from relay.errors import ConnectError
    from relay.outbox.guardian import cdc_position
    from relay.outbox.prune import parse_duration, prune as run

    s = settings()
    age = parse_duration(older_than)
    try:
        position = cdc_position(ConnectClient.for_settings(s), s.connector_name)
    except ConnectError:
        position = None  # no Connect: only rows the polling relay marked count as published
    before = position.committed_at - timedelta(seconds=margin) if position else None
    with connect_postgres(s.dsn, autocommit=False) as conn:
        deleted = run(conn, older_than=age, cdc_published_before=before)
    if json_out:
        emit_json({"deleted": deleted, "cdc_published_before": before})
    else:
        say(f"deleted {deleted} published rows older than {older_than}"
            + (f" (CDC position minus margin: {before.isoformat()})" if before else " (no CDC position known)"))
