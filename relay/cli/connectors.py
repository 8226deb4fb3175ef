"""`relay connectors render|apply|status`."""

from __future__ import annotations

import sys

import typer

from relay.cli.common import JSON_OPTION, emit_json, handles_errors, say, settings
from relay.connect import ConnectClient, render_outbox_connector

app = typer.Typer(help="The Debezium outbox connector in Kafka Connect.", no_args_is_help=True)


@app.command()
@handles_errors
def render() -> None:
    """Print the rendered connector config (the password is a config-provider reference)."""
    emit_json(render_outbox_connector(settings()))


@app.command()
@handles_errors
def apply(
    json_out: bool = JSON_OPTION,
    wait: bool = typer.Option(True, help="wait until the connector and its task are RUNNING"),
    timeout: float = typer.Option(60.0, help="seconds to wait for RUNNING"),
) -> None:
    """Register or update the connector (PUT config); a second apply changes nothing."""
    s = settings()
    client = ConnectClient(s.connect_rest_url)
    result = client.apply(s.connector_name, render_outbox_connector(s))
    status = client.wait_running(s.connector_name, timeout) if wait else client.status(s.connector_name)
    if json_out:
        emit_json({"name": result.name, "changed": result.changed, "created": result.created, "status": status})
    else:
        verb = "created" if result.created else ("updated" if result.changed else "unchanged")
        say(f"connector {result.name}: {verb}; state {status['connector']['state'] if status else '?'}")


@app.command()
@handles_errors
def status(json_out: bool = JSON_OPTION) -> None:
    """Connector and task states (with the trace of a failed task); exit 1 unless RUNNING."""
    s = settings()
    st = ConnectClient(s.connect_rest_url).status(s.connector_name)
    if json_out:
        emit_json(st or {"name": s.connector_name, "connector": {"state": "ABSENT"}, "tasks": []})
    elif st is None:
        say(f"connector {s.connector_name}: not registered (run `relay connectors apply`)")
    else:
        typer.echo(f"{st['name']}: {st['connector']['state']} on {st['connector'].get('worker_id')}")
        for task in st.get("tasks", []):
            typer.echo(f"  task {task['id']}: {task['state']}")
            if task.get("trace"):
                typer.echo(task["trace"])
    ok = st is not None and st["connector"]["state"] == "RUNNING" and all(
        t["state"] == "RUNNING" for t in st.get("tasks", []))
    sys.exit(0 if ok else 1)
