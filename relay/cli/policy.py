"""`relay policy check FILE` and `relay policy explain FILE --workflow W --input JSON`: validate a
side-effect policy; show, before anything runs, its verdict on every command of a run."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import typer

from relay.cli.common import JSON_OPTION, emit_json, handles_errors, json_object, say
from relay.errors import RelayError
from relay.policy import Policy, load_policy
from relay.saga.load import load_workflow
from relay.saga.model import Workflow
from relay.saga.plan import plan

app = typer.Typer(help="Side-effect policies: the gate's rules (first match wins).", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Side-effect policies: the gate's rules (first match wins)."""


def _condition_text(policy: Policy) -> list[tuple[str, str, str]]:
    rows = []
    for rule in policy.rules:
        when = ", ".join(f"{c.fact} {c.op.value} {c.value!r}" for c in rule.when) or "(every action)"
        extra = (f" at {rule.throttle.rate_per_sec:g}/s, burst {rule.throttle.burst}, per {rule.throttle.key}"
                 if rule.throttle else "")
        rows.append((rule.id, rule.decision.value + extra, when))
    return rows


@app.command()
@handles_errors
def check(path: Path = typer.Argument(..., exists=True, dir_okay=False, help="the policy YAML"),
          json_out: bool = JSON_OPTION) -> None:
    """Validate a policy (every problem listed, exit 1); print its rules in order and its hash."""
    policy = load_policy(path)
    rows = _condition_text(policy)
    if json_out:
        emit_json({"version": policy.version, "hash": policy.hash, "default": policy.default.value,
                   "rules": [{"id": i, "decision": d, "when": w} for i, d, w in rows]})
        return
    for n, (rid, decision, when) in enumerate(rows, 1):
        typer.echo(f"{n:>3}. {rid:<40} {decision:<20} when {when}")
    typer.echo(f"     (no rule matched)                         {policy.default.value}")
    say(f"policy {path} OK: version {policy.version}, {len(rows)} rule(s), default {policy.default.value}, "
        f"hash {policy.hash[:12]}")


def _workflow(ref: str) -> Workflow:
    """A workflow from a YAML file, or ``module:attribute`` (a Workflow or a function returning one)."""
    if Path(ref).is_file():
        return load_workflow(Path(ref))
    module, _, attr = ref.partition(":")
    try:
        found: Any = getattr(importlib.import_module(module), attr) if attr else None
    except (ImportError, AttributeError) as exc:
        raise RelayError(f"--workflow {ref!r}: {exc}; expected a YAML file or module:attribute") from None
    found = found() if callable(found) and not isinstance(found, Workflow) else found
    if not isinstance(found, Workflow):
        raise RelayError(f"--workflow {ref!r} is {type(found).__name__}; expected a YAML file or module:attribute "
                         "naming a Workflow (or a function returning one)")
    return found


@app.command()
@handles_errors
def explain(path: Path = typer.Argument(..., exists=True, dir_okay=False, help="the policy YAML"),
            workflow: str = typer.Option(..., "--workflow", help="a workflow YAML file, or module:attribute"),
            input: str = typer.Option("{}", "--input", help="the run's input, a JSON object"),
            env: str = typer.Option("production", "--env", help="the environment the run would be in"),
            json_out: bool = JSON_OPTION) -> None:
    """A dry run: the policy's verdict on every command a run could send, forward and compensation."""
    policy, wf = load_policy(path), _workflow(workflow)
    actions = plan(wf, policy, json_object(input), env=env)
    if json_out:
        emit_json({"workflow": wf.id, "definition": wf.hash, "policy": policy.hash, "env": env, "actions": [
            {"step": a.step, "direction": a.direction, "topic": a.topic, "decision": a.verdict.decision.value,
             "rule": a.verdict.rule_id} for a in actions]})
        return
    for a in actions:
        rule = a.verdict.rule_id or "(the default)"
        typer.echo(f"{a.step:<24} {a.direction:<13} {a.topic:<32} {a.verdict.decision.value:<17} rule {rule}")
    say(f"workflow {wf.id}@{wf.hash[:12]} under policy {policy.hash[:12]} in {env}: {len(actions)} command(s)")
