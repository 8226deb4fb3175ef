"""Whole-definition checks: every problem found, each naming step, field, value and expectation.

- references: ``depends_on``, parallel ``steps`` and ``on_error`` name existing steps;
- the graph (dependencies, parallel membership, error handlers) has no cycle;
- each type has what it needs: a topic for worker/for_each and compensations, ``items`` for
  for_each with a cap (``max_items``), ``seconds`` for delay, a parseable ``expression`` for
  condition, ``workflow`` for subworkflow;
- a side-effecting step declares a compensation or an explicit ``no_rollback_reason``;
- templates: roots ``input``, ``steps``, ``item`` (for_each only); ``steps.<id>`` must be a step
  that has finished whenever this one runs (one it depends on, directly or not).
"""

from __future__ import annotations

from typing import Any

from relay.documents import Problems
from relay.saga import expr
from relay.saga.model import Step, StepType


def validate(p: Problems, steps: dict[str, Step]) -> None:
    owner: dict[str, str] = {}
    for s in steps.values():
        _references(p, s, steps, owner)
        _needs(p, s)
    edges = _edges(steps, owner)
    cycle = _cycle(edges)
    if cycle:
        p.add(cycle[0], "depends_on", cycle, "no cycle: these steps wait for each other")
        return  # "finished before" has no meaning in a cycle: templates are checked once it is gone
    for s in steps.values():
        _templates(p, s, _ancestors(s.id, edges))


def _references(p: Problems, s: Step, steps: dict[str, Step], owner: dict[str, str]) -> None:
    for d in s.depends_on:
        if d not in steps or d == s.id:
            p.add(s.id, "depends_on", d, f"another step of this workflow: one of {sorted(set(steps) - {s.id})}")
    for m in s.members:
        if m not in steps or m == s.id:
            p.add(s.id, "steps", m, f"another step of this workflow: one of {sorted(set(steps) - {s.id})}")
        elif m in owner:
            p.add(s.id, "steps", m, f"a step of one parallel group only (it is in {owner[m]!r} already)")
        else:
            owner[m] = s.id
    if s.on_error is not None and (s.on_error not in steps or s.on_error == s.id):
        p.add(s.id, "on_error", s.on_error, f"another step of this workflow: one of {sorted(set(steps) - {s.id})}")


def _needs(p: Problems, s: Step) -> None:
    if s.type in (StepType.WORKER, StepType.FOR_EACH) and not s.topic:
        p.add(s.id, "topic", s.topic, f"the topic a {s.type.value} step sends its command to")
    if s.type is StepType.FOR_EACH:
        if not s.items:
            p.add(s.id, "items", s.items, "a template giving the list, e.g. ${input.hosts}")
        if s.max_items <= 0:
            p.add(s.id, "max_items", s.max_items, "a cap on the number of items (default 1000)")
    if s.type is StepType.DELAY and s.delay_s is None:
        p.add(s.id, "seconds", s.delay_s, "how long the delay waits, seconds > 0")
    if s.type is StepType.SUBWORKFLOW and not s.workflow:
        p.add(s.id, "workflow", s.workflow, "the id of the workflow to run as a child")
    if s.type is StepType.CONDITION:
        try:
            expr.compile_condition(s.expression or "")
        except ValueError as exc:
            p.add(s.id, "expression", s.expression, f"a condition ({exc})")
    if s.side_effect and s.compensation is None and not s.no_rollback_reason:
        p.add(s.id, "compensation", None, "a compensation step or an explicit no_rollback_reason "
              "for a step with side_effect: true")


def _edges(steps: dict[str, Step], owner: dict[str, str]) -> dict[str, set[str]]:
    """step -> the steps that must have finished before it runs."""
    known = set(steps)  # unknown names are reported by _references; the graph leaves them out
    edges = {sid: set(s.depends_on) & known for sid, s in steps.items()}
    for member, parent in owner.items():
        edges[member] |= set(steps[parent].depends_on) & known  # members start with their parallel step
    for sid, s in steps.items():
        if s.type is StepType.PARALLEL:
            edges[sid] |= set(s.members) & known  # a parallel step finishes after its members
        if s.on_error in known:
            edges[s.on_error].add(sid)  # the handler runs after the failed step
    return edges


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return path[path.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        path.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state and (found := visit(n)):
            return found
    return None


def _ancestors(sid: str, edges: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(edges.get(sid, ()))
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(edges.get(n, ()))
    return seen


def _templates(p: Problems, s: Step, before: set[str]) -> None:
    fields: list[tuple[str, Any]] = [("input", s.input), ("items", s.items), ("expression", s.expression),
                                     ("expected_version", s.expected_version)]
    if s.compensation is not None:
        fields.append(("compensation.input", s.compensation.input))
    for name, value in fields:
        for ref in expr.references(value):
            try:
                root, step = expr.check_reference(ref)
            except ValueError as exc:
                p.add(s.id, name, f"${{{ref}}}", str(exc).split(": ", 1)[1].removeprefix("expected "))
                continue
            if root == "item" and not (s.type is StepType.FOR_EACH and name in ("input", "compensation.input",
                                                                                 "expected_version")):
                p.add(s.id, name, f"${{{ref}}}", "${item} only in the input of a for_each step")
            allowed = before | ({s.id} if name == "compensation.input" else set())
            if step is not None and step not in allowed:
                p.add(s.id, name, f"${{{ref}}}",
                      f"a step that has finished when this one runs: one of {sorted(allowed)}")
