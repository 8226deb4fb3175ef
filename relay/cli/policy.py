"""`relay policy check FILE`: validate a side-effect policy and show its rules in order."""

from __future__ import annotations

from pathlib import Path

import typer

from relay.cli.common import JSON_OPTION, emit_json, handles_errors, say
from relay.policy import Policy, load_policy

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
