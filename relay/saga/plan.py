"""A dry-run plan (sans I/O): the policy's verdict on every command a run of a workflow can send,
forward and compensation, before anything runs (`relay policy explain`).

The facts are what the definition and the run's input say: topic, side_effect, whether a
compensation is declared, the input fields that do not depend on other steps' outputs. No
approval is present before the run. A fact that only the run will know (an output-based input
field) is missing, and a condition on a missing fact does not hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from relay.policy.evaluate import evaluate
from relay.policy.model import Policy, Verdict
from relay.saga.expr import TemplateError, render
from relay.saga.gate import facts
from relay.saga.model import Step, StepType, Workflow

DISPATCHING = (StepType.WORKER, StepType.FOR_EACH)  # the step types that send commands


@dataclass(frozen=True)
class PlannedAction:
    step: str
    direction: str                 # forward | compensation
    topic: str
    verdict: Verdict
    facts: Mapping[str, Any]


def _known_input(template: Mapping[str, Any], run_input: Mapping[str, Any]) -> dict[str, Any]:
    """The step's input fields that the run's input alone determines."""
    known = {}
    for key, value in template.items():
        try:
            known[key] = render(value, {"input": run_input, "steps": {}, "item": None})
        except (TemplateError, ValueError):
            continue  # needs another step's output (or an item): only the run will know
    return known


def step_facts(wf: Workflow, step: Step, run_input: Mapping[str, Any], *, env: str, compensation: bool = False
               ) -> dict[str, Any]:
    """The facts the gate sees before dispatching ``step`` (or its compensation), as far as the
    run's input determines them."""
    template = step.compensation.input if compensation and step.compensation is not None else step.input
    return facts(wf, step, _known_input(template, run_input), env=env, compensation=compensation)


def plan(wf: Workflow, policy: Policy, run_input: Mapping[str, Any], *, env: str) -> list[PlannedAction]:
    """The verdict on each command a run could send: the steps in definition order, each step's
    compensation after its forward command."""
    out = []
    for step in wf.steps.values():
        if step.type not in DISPATCHING:
            continue
        facts = step_facts(wf, step, run_input, env=env)
        out.append(PlannedAction(step.id, "forward", str(facts["topic"]), evaluate(policy, facts), facts))
        if step.compensation is not None:
            facts = step_facts(wf, step, run_input, env=env, compensation=True)
            out.append(PlannedAction(step.id, "compensation", str(facts["topic"]), evaluate(policy, facts), facts))
    return out
