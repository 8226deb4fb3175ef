"""Saga definitions: every problem at once (step, field, value, expectation); versions by hash."""

from __future__ import annotations

import pytest

from relay.errors import SagaDefinitionError
from relay.saga import build_workflow, load_workflow


def problems(doc) -> list[str]:
    with pytest.raises(SagaDefinitionError) as info:
        build_workflow(doc)
    return info.value.problems


def test_every_problem_is_reported_at_once():
    found = problems({"id": "bad", "steps": {
        "a": {"type": "worker"},                                           # no topic
        "b": {"type": "worker", "topic": "t", "depends_on": ["nope"]},     # unknown dependency
        "c": {"type": "worker", "topic": "t", "side_effect": True},        # neither compensation nor reason
        "d": {"type": "for_each", "topic": "t", "items": "${input.xs}", "max_items": 0},  # no cap
        "e": {"type": "teleport"},                                          # unknown type
        "f": {"type": "worker", "topic": "t", "dependson": ["a"]},          # misspelt field
    }})
    text = "\n".join(found)
    assert len(found) == 6, text
    assert "step 'a': topic = None; expected the topic a worker step sends its command to" in text
    assert "step 'b': depends_on = 'nope'; expected another step of this workflow" in text
    assert "step 'c': compensation = None; expected a compensation step or an explicit no_rollback_reason" in text
    assert "step 'd': max_items = 0; expected an integer >= 1" in text
    assert "step 'e': type = 'teleport'; expected one of ['worker', 'approval'" in text
    assert "step 'f': dependson = ['a']; expected a field of a worker step" in text


def test_cycles_and_template_references_are_refused():
    cyc = problems({"id": "c", "steps": {"a": {"type": "worker", "topic": "t", "depends_on": ["b"]},
                                         "b": {"type": "worker", "topic": "t", "depends_on": ["a"]}}})
    assert len(cyc) == 1 and "no cycle" in cyc[0] and "['a', 'b', 'a']" in cyc[0]
    refs = problems({"id": "r", "steps": {
        "a": {"type": "worker", "topic": "t", "input": {"x": "${steps.b.output.id}"}},   # b is not before a
        "b": {"type": "worker", "topic": "t", "input": {"y": "${env.HOME}"}},            # unknown root
        "c": {"type": "worker", "topic": "t", "input": {"z": "${item}"}},                # item outside for_each
        "d": {"type": "condition", "expression": "__import__('os')"}}})
    text = "\n".join(refs)
    assert len(refs) == 4, text
    assert "step 'a': input = '${steps.b.output.id}'; expected a step that has finished when this one runs" in text
    assert "step 'b': input = '${env.HOME}'; expected to start with one of input, steps, item" in text
    assert "step 'c': input = '${item}'; expected ${item} only in the input of a for_each step" in text
    assert "step 'd': expression" in text and "Call is not allowed" in text


def test_the_hash_pins_behaviour_not_the_display_name():
    doc = {"id": "o", "name": "Orders", "steps": {"a": {"type": "worker", "topic": "t"}}}
    v1 = build_workflow(doc)
    assert build_workflow({**doc, "name": "Orders (renamed)"}).hash == v1.hash
    assert build_workflow({**doc, "steps": {"a": {"type": "worker", "topic": "t2"}}}).hash != v1.hash
    assert len(v1.hash) == 64


def test_yaml_errors_name_the_problem():
    with pytest.raises(SagaDefinitionError, match="not YAML"):
        load_workflow("id: [unclosed")
    with pytest.raises(SagaDefinitionError, match="expected a non-empty mapping of step id -> step"):
        load_workflow("id: empty\nsteps: {}")


def test_a_stored_definition_comes_back_with_its_hash():
    import json

    from relay.saga.model import from_doc, to_doc
    from tests.unit.test_saga_engine import INCIDENT, order_saga
    for wf in (load_workflow(INCIDENT), order_saga(on_failure="retry")):
        again = from_doc(json.loads(json.dumps(to_doc(wf))))
        assert again == wf and again.hash == wf.hash
    doc = to_doc(order_saga())
    doc["steps"]["ship"]["topic"] = "elsewhere"
    with pytest.raises(ValueError, match="was altered"):
        from_doc(doc)
