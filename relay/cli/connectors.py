"""`relay connectors render|validate|apply|status|pause|resume|restart|delete`.

Every verb takes ``--json``; the verbs that act on a registered connector take ``--name``
(default: the ``connector_name`` setting), and the verbs that send a config take ``--set
key=value`` (repeatable) to override keys of the rendered config.

Secrets: the rendered config references the database password through Connect's ``file``
config provider (``${file:...}``) and keeps that reference in every output. Connect resolves
references on its side, also when validating, and may then quote a resolved value in an error
message; everything printed here passes through a redaction of the known secret values
(``pg_cdc_password`` and whatever the config's ``${file:...}`` references resolve to, if the
file is readable on this machine).
"""

from __future__ import annotations

import sys
from typing import Any, Optional

import typer

from relay.cli.common import JSON_OPTION, emit_json, handles_errors, say, settings
from relay.config import Settings
from relay.connect import ConnectClient, render_outbox_connector
from relay.connect.client import local_file_secrets, redact
from relay.connect.settle import (
    OffsetProgress,
    PastRow,
    all_of,
    progress_timeout,
    request_restart,
    root_cause,
    wait_stable,
)
from relay.errors import RelayError

app = typer.Typer(help="The Debezium outbox connector in Kafka Connect.", no_args_is_help=True)

NAME_OPTION = typer.Option(None, "--name", help="connector name (default: the connector_name setting)")
SET_OPTION = typer.Option(
    None, "--set", metavar="KEY=VALUE",
    help="override a key of the rendered config (repeatable; `--set key=` sets an empty value)")
TIMEOUT_OPTION = typer.Option(60.0, "--timeout", help="seconds to wait for the new state (at least 2.5 heartbeat "
                               "intervals past the settle period when progress must be seen)")


def parse_overrides(pairs: Optional[list[str]]) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint="--set")
        overrides[key] = value
    return overrides


class _Session:
    """Settings, the rendered config (with overrides), the secrets to redact and a client."""

    def __init__(self, name: Optional[str] = None, sets: Optional[list[str]] = None) -> None:
        self.s: Settings = settings()
        self.name = name or self.s.connector_name
        self.overrides = parse_overrides(sets)
        self._config: dict[str, str] | None = None
        self.secrets = [self.s.pg_cdc_password.get_secret_value()]
        try:  # what the template's own ${file:...} references resolve to, if readable here
            self.secrets += local_file_secrets(render_outbox_connector(self.s))
        except RelayError:
            pass
        self.client = ConnectClient.for_settings(self.s, secrets=self.secrets)

    @property
    def config(self) -> dict[str, str]:
        if self._config is None:
            config = render_outbox_connector(self.s)
            config.update(self.overrides)
            self.secrets.extend(local_file_secrets(config))
            self.client.secrets = [s for s in self.secrets if s]
            for key, value in self.overrides.items():
                if "password" in key and value and not value.startswith("${"):
                    say(f"warning: {key} is a literal value; reference it through a config provider "
                        "(${file:...}) so that it never shows in Connect's REST API")
            self._config = config
        return self._config

    def progress(self) -> OffsetProgress | None:
        """Taken before an action: tells afterwards whether the task moved its source offset
        (heartbeats move it every few seconds); None when heartbeats are off (it could not tell)."""
        if self.name != self.s.connector_name or not self.s.heartbeat_interval_ms:
            return None
        return OffsetProgress(self.client, self.name)

    def past_blocked_row(self) -> PastRow | None:
        """When a task of the outbox connector FAILED on a row: a reading that says whether the
        task got past that row (None when no row is known). A failed task can hold the slot for
        30 s, and without the row a restart could only watch offsets move, which the batches
        before the row do too: so the row is looked for until the slot is free."""
        if self.name != self.s.connector_name:
            return None
        from relay.outbox.unblock import SLOT_RELEASE_WAIT_S, Unblocker

        try:
            blocked = Unblocker(self.s).locate(wait_s=SLOT_RELEASE_WAIT_S)  # None when no task FAILED
        except RelayError as exc:
            self.say(f"connector {self.name}: the row a failed task stopped on is not known ({exc}); "
                     "success rests on the task staying RUNNING and its offset moving")
            return None
        if blocked is None or blocked.row is None:
            return None
        return PastRow(self.client, self.name, blocked.row.lsn)

    def wait_stable(self, timeout: float, progress: Any) -> dict[str, Any]:
        """RUNNING through the settle period, and progress (see relay.connect.settle)."""
        if progress is not None:  # two offset moves: at least two heartbeats on an idle outbox
            timeout = progress_timeout(timeout, settle_s=self.s.connect_settle_s,
                                       heartbeat_ms=self.s.heartbeat_interval_ms)
        return wait_stable(self.client, self.name, settle_s=self.s.connect_settle_s, timeout_s=timeout,
                           reading=progress)

    def clean(self, data: Any) -> Any:
        return redact(data, self.secrets)

    def json(self, data: Any) -> None:
        emit_json(self.clean(data))

    def echo(self, text: str) -> None:
        typer.echo(self.clean(text))

    def say(self, text: str) -> None:
        say(self.clean(text))


def _state_line(st: dict[str, Any]) -> str:
    tasks = ", ".join(f"task {t['id']} {t['state']}" for t in st["tasks"]) or "no tasks"
    return f"{st['connector']['state']} ({tasks})"


def _print_status(ses: _Session, st: dict[str, Any]) -> None:
    ses.echo(f"{st['name']}: {st['connector']['state']} on {st['connector'].get('worker_id')}")
    if st["connector"].get("trace"):
        ses.echo(f"root cause: {root_cause(st['connector']['trace'])}")
        ses.echo(st["connector"]["trace"])
    for task in st["tasks"]:
        ses.echo(f"  task {task['id']}: {task['state']} on {task.get('worker_id')}")
        if task.get("trace"):
            ses.echo(f"  root cause: {root_cause(task['trace'])}")
            ses.echo(task["trace"])


@app.command()
@handles_errors
def render(sets: Optional[list[str]] = SET_OPTION, json_out: bool = JSON_OPTION) -> None:
    """Print the rendered connector config as JSON (the password is a config-provider reference)."""
    ses = _Session(sets=sets)
    ses.json(ses.config)


@app.command()
@handles_errors
def validate(name: Optional[str] = NAME_OPTION, sets: Optional[list[str]] = SET_OPTION,
             json_out: bool = JSON_OPTION) -> None:
    """Validate the rendered config with Connect's own validation; list every problem, exit 1 if any.

    Connect resolves ${file:...} references before validating, and Debezium opens a test
    connection to Postgres, so a wrong password or an unreachable database shows up here too.
    """
    ses = _Session(name, sets)
    problems = ses.client.validate(ses.config, ses.name)
    if json_out:
        ses.json([p.as_dict() for p in problems])
    elif not problems:
        ses.echo(f"connector {ses.name}: config valid ({len(ses.config)} keys checked by Kafka Connect)")
    else:
        ses.echo(f"connector {ses.name}: {len(problems)} invalid key(s):")
        for p in problems:
            shown = "(not set)" if p.value is None else repr(p.value)
            ses.echo(f"  {p.key} = {shown}")
            for err in p.errors:
                ses.echo(f"    - {err}")
    sys.exit(1 if problems else 0)


@app.command()
@handles_errors
def apply(
    name: Optional[str] = NAME_OPTION,
    sets: Optional[list[str]] = SET_OPTION,
    json_out: bool = JSON_OPTION,
    wait: bool = typer.Option(True, help="wait until the task stayed RUNNING and made progress for "
                                         "RELAY_CONNECT_SETTLE_S"),
    timeout: float = typer.Option(60.0, help="seconds to wait for that"),
) -> None:
    """Register or update the connector (PUT config); a second apply changes nothing.

    Exit 0 only once the task stayed RUNNING through the settle period and made progress; exit 1
    with the root cause when it fails (a task can die on a record a moment after it says RUNNING).
    A paused or stopped connector stays so (Connect keeps its target state): nothing to wait for."""
    ses = _Session(name, sets)
    held = ses.client.state(ses.name)["connector"]["state"] in ("PAUSED", "STOPPED")
    progress = ses.progress() if wait and not held else None
    result = ses.client.apply(ses.name, ses.config)
    status = ses.wait_stable(timeout, progress) if wait and not held else ses.client.state(ses.name)
    if json_out:
        ses.json({"name": result.name, "changed": result.changed, "created": result.created, "status": status})
    else:
        verb = "created" if result.created else ("updated" if result.changed else "unchanged")
        note = " (it stays so until `relay connectors resume`)" if held else ""
        ses.say(f"connector {result.name}: {verb}; state {_state_line(status)}{note}")


@app.command()
@handles_errors
def status(name: Optional[str] = NAME_OPTION, json_out: bool = JSON_OPTION) -> None:
    """Connector and task states, worker ids and traces of failures; exit 1 unless all RUNNING."""
    ses = _Session(name)
    st = ses.client.state(ses.name)
    if json_out:
        ses.json(st)
    elif st["connector"]["state"] == "ABSENT":
        ses.say(f"connector {ses.name}: not registered (run `relay connectors apply`)")
    else:
        _print_status(ses, st)
    sys.exit(0 if st["ok"] else 1)


@app.command()
@handles_errors
def pause(name: Optional[str] = NAME_OPTION, json_out: bool = JSON_OPTION,
          timeout: float = TIMEOUT_OPTION) -> None:
    """Pause the connector and its tasks and wait for PAUSED (pausing a paused connector is fine).

    A paused connector keeps its replication slot, which then holds WAL in Postgres until resumed.
    """
    ses = _Session(name)
    before = ses.client.require(ses.name)
    was_paused = before["connector"]["state"] == "PAUSED"
    ses.client.pause(ses.name)
    st = ses.client.wait_paused(ses.name, timeout)
    if json_out:
        ses.json({"name": ses.name, "action": "pause", "changed": not was_paused, "status": st})
    else:
        ses.say(f"connector {ses.name}: {'already paused' if was_paused else 'paused'}; {_state_line(st)}"
                "\n  (its replication slot now holds WAL in Postgres until `relay connectors resume`)")


@app.command()
@handles_errors
def resume(name: Optional[str] = NAME_OPTION, json_out: bool = JSON_OPTION,
           timeout: float = TIMEOUT_OPTION) -> None:
    """Resume a paused or stopped connector; exit 0 once it stayed RUNNING through the settle period,
    1 with the root cause otherwise (resuming a running connector is fine)."""
    ses = _Session(name)
    before = ses.client.require(ses.name)
    was_running = before["ok"]
    progress = ses.progress()
    ses.client.resume(ses.name)
    st = ses.wait_stable(timeout, progress)
    if json_out:
        ses.json({"name": ses.name, "action": "resume", "changed": not was_running, "status": st})
    else:
        ses.say(f"connector {ses.name}: {'already running' if was_running else 'resumed'}; {_state_line(st)}")


@app.command()
@handles_errors
def restart(
    name: Optional[str] = NAME_OPTION,
    all_: bool = typer.Option(False, "--all", help="restart the connector and every task, not only failed ones"),
    json_out: bool = JSON_OPTION,
    timeout: float = TIMEOUT_OPTION,
) -> None:
    """Restart failed tasks (and a failed connector); --all restarts everything.

    Exit 0 only once everything stayed RUNNING through the settle period and made progress; exit
    1 with the root cause when a task fails again (e.g. on the same record)."""
    ses = _Session(name)
    ses.client.require(ses.name)
    progress = all_of(ses.progress(), ses.past_blocked_row())
    restarted = request_restart(ses.client, ses.name, only_failed=not all_, timeout_s=timeout)
    try:
        st = ses.wait_stable(timeout, progress)
    except RelayError as exc:
        if json_out:
            ses.json({"name": ses.name, "action": "restart", "only_failed": not all_, "restarted": restarted,
                      "ok": False, "error": str(exc), "status": ses.client.state(ses.name)})
        ses.say(f"connector {ses.name}: restarted {', '.join(restarted) or 'nothing'}; not healthy:")
        raise
    if json_out:
        ses.json({"name": ses.name, "action": "restart", "only_failed": not all_, "restarted": restarted,
                  "ok": True, "status": st})
    else:
        what = ", ".join(restarted) if restarted else "nothing (no failed connector or task)"
        ses.say(f"connector {ses.name}: restarted {what}; {_state_line(st)} for {ses.s.connect_settle_s:g} s")


@app.command()
@handles_errors
def delete(name: Optional[str] = NAME_OPTION, json_out: bool = JSON_OPTION,
           timeout: float = typer.Option(30.0, "--timeout",
                                         help="seconds to wait until Connect lists it no more")) -> None:
    """Delete the connector (an absent one is reported, exit 0). Its replication slot stays in Postgres."""
    ses = _Session(name)
    result = ses.client.delete(ses.name, timeout)
    slot = result.slot_name or "(unknown)"
    note = (f"replication slot {slot!r} stays in Postgres and holds WAL until it is consumed or dropped; "
            f"re-creating a connector named {ses.name!r} (`relay connectors apply`) resumes from the "
            "offsets Connect stored for it. Drop the slot only if this connector is gone for good: "
            "events committed since its last offset would then never be published.")
    if json_out:
        ses.json({"name": ses.name, "action": "delete", "existed": result.existed, "deleted": result.existed,
                  "slot_name": result.slot_name, "database": result.database,
                  "note": note if result.existed else None})
    elif not result.existed:
        ses.say(f"connector {ses.name}: not registered; nothing to delete")
    else:
        ses.say(f"connector {ses.name}: deleted.\n  {note}")
