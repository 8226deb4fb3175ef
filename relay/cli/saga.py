"""`relay saga list|show|start|approve|deny|cancel|retry|definitions`: operate saga runs."""

from __future__ import annotations

from datetime import datetime, timezone

import psycopg
import typer

from relay.cli.common import JSON_OPTION, emit_json, handles_errors, json_object, say, settings
from relay.saga import audit, ops, wire
from relay.saga.start import start as start_run

app = typer.Typer(help="Saga runs: where each stands and why; approvals, cancel, retry.", no_args_is_help=True)


def _conn() -> psycopg.Connection:
    return psycopg.connect(settings().dsn)


@app.command("list")
@handles_errors
def list_(state: str = typer.Option(None, "--state", help="only runs in this state"),
          workflow: str = typer.Option(None, "--workflow"),
          key: str = typer.Option(None, "--key", help="only runs of this business key (e.g. an order id)"),
          older_than: float = typer.Option(None, "--older-than", help="only runs unchanged for this many seconds"),
          limit: int = typer.Option(100, "--limit"), json_out: bool = JSON_OPTION) -> None:
    """Runs, newest first, as the coordinator last stored them."""
    with _conn() as conn:
        rows = ops.list_runs(conn, state=state, workflow=workflow, business_key=key, older_than_s=older_than,
                             limit=limit)
    if json_out:
        emit_json([r.as_dict() for r in rows])
        return
    for r in rows:
        typer.echo(f"{r.run_id}  {r.status:<20} {r.workflow}@{r.definition}  key={r.business_key}  "
                   f"updated {r.updated_at:%Y-%m-%d %H:%M:%S}")
    say(f"{len(rows)} run(s)")


@app.command()
@handles_errors
def show(run_id: str, json_out: bool = JSON_OPTION) -> None:
    """One run: its state, every step and its timeline."""
    with _conn() as conn:
        run = ops.show_run(conn, run_id)
    if json_out:
        emit_json(run)
        return
    typer.echo(f"run {run['run_id']}  {run['workflow']}@{run['definition_hash'][:12]}  {run['status']}"
               f"  key={run['business_key']}" + (f"  reason: {run['reason']}" if run.get("reason") else ""))
    for sid, st in run["steps"].items():
        typer.echo(f"  {sid:<24} {st['status']:<20} attempt {st['attempt']}"
                   + (f"  error: {st['error']}" if st.get("error") else ""))
    for target, g in run.get("gates", {}).items():
        votes = ", ".join(f"{'+' if d['approved'] else '-'}{d['by']}" for d in g["decisions"])
        typer.echo(f"  gate {target:<19} {g['state']:<20} payload {g['hash']}  rule {g.get('rule') or '(default)'}"
                   f"  needs {g['needed']}" + (f" of {g['scope']}" if g["scope"] else "")
                   + (f"  votes {votes}" if votes else ""))
    for t in run["timeline"]:
        at = datetime.fromtimestamp(t["at"], timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        typer.echo(f"    {at} {t['step'] or '-':<20} {t['outcome']}"
                   + (f" (attempt {t['attempt']})" if t.get("attempt") else "")
                   + (f": {t['error']}" if t.get("error") else ""))


@app.command()
@handles_errors
def start(workflow: str, input: str = typer.Option("{}", "--input", help="the run's input, a JSON object"),
          key: str = typer.Option(..., "--key", help="idempotency key: the same key starts the same run"),
          business_key: str = typer.Option(None, "--business-key"),
          initiator: str = typer.Option(None, "--initiator", help="who starts it (four-eyes approvals)")) -> None:
    """Start a run (an outbox event, like relay.saga.start in a service's transaction)."""
    data = json_object(input)
    with _conn() as conn, conn.transaction():
        typer.echo(start_run(conn, workflow, input=data, idempotency_key=key, business_key=business_key,
                             initiator=initiator))


def _control(run_id: str, kind: wire.SagaEvent, payload: dict) -> None:
    with _conn() as conn, conn.transaction():
        ops.control(conn, run_id, kind, payload)
    say(f"{kind.value} sent to run {run_id}")


HASH_OPTION = typer.Option(None, "--hash", help="the payload hash you reviewed (a policy gate's request); "
                           "default: the open request's, shown by relay saga show")


def _approval(run_id: str, step: str, approved: bool, by: str, reason: str, payload_hash: str | None) -> None:
    with _conn() as conn, conn.transaction():
        ops.decide_approval(conn, run_id, step, approved=approved, by=by, reason=reason, payload_hash=payload_hash)
    say(f"{'approval' if approved else 'denial'} of {step} sent to run {run_id}")


@app.command()
@handles_errors
def approve(run_id: str, step: str, by: str = typer.Option(..., "--by"), reason: str = typer.Option("", "--reason"),
            payload_hash: str = HASH_OPTION) -> None:
    """Approve a run's approval step (also before the run reached it: the decision is kept), or
    the policy gate's request for a step; a decision that would not count is refused with why."""
    _approval(run_id, step, True, by, reason, payload_hash)


@app.command()
@handles_errors
def deny(run_id: str, step: str, by: str = typer.Option(..., "--by"), reason: str = typer.Option("", "--reason"),
         payload_hash: str = HASH_OPTION) -> None:
    """Deny a run's approval step or a gate's request: the step fails, and the run with it unless it has on_error."""
    _approval(run_id, step, False, by, reason, payload_hash)


@app.command()
@handles_errors
def verify(run_id: str = typer.Argument(None, help="the run to check; --all for every run"),
           every: bool = typer.Option(False, "--all", help="every run with evidence"),
           json_out: bool = JSON_OPTION) -> None:
    """Check runs' evidence chains in Postgres against the heads published on Kafka; name the
    first bad entry of each. Exit code 1 when any run's evidence does not hold."""
    if (run_id is None) == (not every):
        raise typer.BadParameter("give a run id or --all (not both)")
    reports = audit.verify_runs(settings(), None if every else run_id)
    bad = [r for r in reports if not r.ok]
    if json_out:
        emit_json([r.as_dict() for r in reports])
    else:
        for r in reports if not every else bad:
            typer.echo(f"{r.run_id}  {r.status or '?':<20} {r.entries} entries  "
                       + (f"BAD: {r.finding}" if r.finding else "ok")
                       + (f"  ({r.uncovered} after the last published head: the run is live)" if r.uncovered else ""))
        say(f"{len(reports)} run(s) checked, {len(bad)} with bad evidence")
    if bad:
        raise typer.Exit(1)


@app.command()
@handles_errors
def cancel(run_id: str, reason: str = typer.Option("cancelled by an operator", "--reason")) -> None:
    """Cancel a run: nothing new starts, what completed is compensated."""
    _control(run_id, wire.SagaEvent.CANCEL, {"reason": reason})


@app.command()
@handles_errors
def retry(run_id: str) -> None:
    """Retry a failed or compensation_failed run from where it stopped."""
    _control(run_id, wire.SagaEvent.RETRY, {})


@app.command()
@handles_errors
def definitions(json_out: bool = JSON_OPTION) -> None:
    """Every stored definition version and how many runs each still has in flight."""
    with _conn() as conn:
        rows = ops.definitions(conn)
    if json_out:
        emit_json(rows)
        return
    for d in rows:
        typer.echo(f"{d['workflow']}@{d['hash'][:12]}  registered {d['registered_at']}  "
                   f"{d['runs_in_flight']} in flight, {d['runs']} run(s)")
