"""Any interleaving of duplicated, reordered and late replies and timer firings ends the same way,
and no command id is ever sent with two different contents (hypothesis drives the interleavings)."""

from __future__ import annotations

import random

from hypothesis import given, settings, strategies as st

from relay.policy import build_policy
from relay.saga import RunStatus, StepStatus, build_workflow
from relay.saga.gate import Gate
from tests.unit.saga_sim import Sim

# a long rollback window (as below): the noisy driver can hold a reply back behind many undo
# timeouts, long enough for the default 30 s window to end the run compensation_failed
WF = build_workflow({"id": "props", "rollback_window_sec": 600, "steps": {
    "charge": {"type": "worker", "topic": "pay", "side_effect": True, "timeout_sec": 5,
               "compensation": {"topic": "refund", "input": {"c": "${steps.charge.output.id}"}}},
    "scan": {"type": "parallel", "depends_on": ["charge"], "steps": ["a", "b"], "max_parallel": 1},
    "a": {"type": "worker", "topic": "a", "timeout_sec": 5},
    "b": {"type": "worker", "topic": "b", "timeout_sec": 5, "side_effect": True, "no_rollback_reason": "read-only API"},
    "each": {"type": "for_each", "depends_on": ["scan"], "topic": "e", "items": "${input.items}", "max_parallel": 2,
             "input": {"i": "${item}"}, "timeout_sec": 5, "side_effect": True, "compensation": {"topic": "e.undo"}},
    "gate": {"type": "approval", "depends_on": ["each"], "expires_sec": 600},
    "pause": {"type": "delay", "depends_on": ["gate"], "seconds": 2},
    "ship": {"type": "worker", "topic": "ship", "depends_on": ["pause"], "timeout_sec": 5, "side_effect": True,
             "compensation": {"topic": "unship"}},
}})


RUNS = dict(seed=st.integers(0, 2**32 - 1), fail_at=st.sampled_from([None, "charge", "a", "each", "ship"]),
            flaky=st.sets(st.sampled_from(["charge", "a", "b", "ship", "each[0]", "each[1]"])),
            items=st.integers(0, 3))


def behaviour(fail_at: str | None, flaky: set[str], undo_fails: str | None = None):
    seen: dict[str, int] = {}

    def answer(cmd):
        n = seen[cmd.idempotency_key] = seen.get(cmd.idempotency_key, 0) + 1
        if cmd.compensation:
            if cmd.topic == undo_fails:
                return ("fail", "cannot undo", False)
            return ("ok", {}) if n > 1 or cmd.step not in flaky else ("fail", "busy", True)
        if cmd.step.split("[")[0] == fail_at:
            return ("fail", "refused", False)
        if cmd.step in flaky and n == 1:
            return ("fail", "busy", True)
        return ("ok", {"id": f"{cmd.idempotency_key}"})  # the same output for every attempt: the key dedups
    return answer


def outcome(sim: Sim) -> tuple:
    s = sim.state
    steps = {k: v.status for k, v in s.steps.items()}
    return s.status, steps


@settings(max_examples=150, deadline=None)
@given(**RUNS)
def test_every_interleaving_ends_like_the_orderly_one(seed, fail_at, flaky, items):
    _ends_like_the_orderly_one(seed, fail_at, flaky, items, None)


# the policy gate's throttle in the loop: commands held back to their slots, sent later as the
# same attempts, in any interleaving of the rest
THROTTLED = Gate(build_policy({"version": "v1", "default": "allow", "rules": [
    {"id": "slow-items", "when": {"topic": ["e", "e.undo"]}, "decision": "throttle",
     "throttle": {"rate_per_sec": 1, "burst": 1, "key": "topic"}},
    {"id": "slow-ships", "when": {"topic": "ship"}, "decision": "throttle",
     "throttle": {"rate_per_sec": 0.5, "burst": 1, "key": "workflow"}}]}))


@settings(max_examples=100, deadline=None)
@given(**RUNS)
def test_throttled_commands_end_like_the_orderly_run_in_every_interleaving(seed, fail_at, flaky, items):
    _ends_like_the_orderly_one(seed, fail_at, flaky, items, THROTTLED)


def _ends_like_the_orderly_one(seed, fail_at, flaky, items, gate):
    inp = {"items": list(range(items))}
    calm = Sim(WF, behaviour(fail_at, flaky), approvals={"gate": True}, gate=gate)
    calm.run(inp)
    noisy = Sim(WF, behaviour(fail_at, flaky), approvals={"gate": True}, rng=random.Random(seed), gate=gate)
    noisy.run(inp)
    assert calm.state.status in (RunStatus.COMPLETED, RunStatus.COMPENSATED, RunStatus.FAILED)
    assert outcome(noisy) == outcome(calm)
    # compensations: reverse completion order, each compensated step undone by one key
    done = [k for k in noisy.state.done_order if noisy.state.steps[k].status is StepStatus.COMPENSATED]
    undone = list(dict.fromkeys(d.step for d in noisy.dispatches if d.compensation))
    assert undone == list(reversed(done))


# a long rollback window: the noisy driver can hold a reply back behind many timers, and the window
# firing then would be a true (but different) ending, not the point of this test
CHILD_WF = build_workflow({"id": "props_child", "rollback_window_sec": 600, "steps": {
    "hold": {"type": "worker", "topic": "hold", "side_effect": True, "timeout_sec": 5,
             "compensation": {"topic": "unhold", "input": {"h": "${steps.hold.output.id}"}}},
    "look": {"type": "worker", "topic": "look", "depends_on": ["hold"], "timeout_sec": 5},
    "book": {"type": "worker", "topic": "book", "depends_on": ["look"], "side_effect": True, "timeout_sec": 5,
             "compensation": {"topic": "unbook"}},
}})
PARENT_WF = build_workflow({"id": "props_parent", "rollback_window_sec": 600, "steps": {
    "charge": {"type": "worker", "topic": "pay", "side_effect": True, "timeout_sec": 5,
               "compensation": {"topic": "refund"}},
    "sub": {"type": "subworkflow", "workflow": "props_child", "depends_on": ["charge"]},
    "ship": {"type": "worker", "topic": "ship", "depends_on": ["sub"], "timeout_sec": 5, "side_effect": True,
             "compensation": {"topic": "unship"}},
}})


UNDONE_OR_TRIED = (StepStatus.COMPENSATED, StepStatus.COMPENSATION_FAILED)


def every_run(sim: Sim) -> dict:
    return {run: (s.status, {k: v.status for k, v in s.steps.items()}) for run, s in sim.runs.items()}


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), fail_at=st.sampled_from([None, "charge", "hold", "book", "ship"]),
       flaky=st.sets(st.sampled_from(["charge", "hold", "book", "ship"])),
       undo_fails=st.sampled_from([None, None, "unbook", "unhold"]))
def test_a_parent_and_its_child_end_the_same_whatever_the_interleaving(seed, fail_at, flaky, undo_fails):
    runs = []
    for rng in (None, random.Random(seed)):
        sim = Sim(PARENT_WF, behaviour(fail_at, flaky, undo_fails), rng=rng, workflows={"props_child": CHILD_WF})
        sim.run({})
        runs.append(sim)
    calm, noisy = runs
    assert every_run(noisy) == every_run(calm)
    for run, state in noisy.runs.items():  # each run undoes last completed first, each step once
        done = [k for k in state.done_order if state.steps[k].status in UNDONE_OR_TRIED]
        undone = list(dict.fromkeys(step for r, step in noisy.undo_log if r == run))
        assert undone == list(reversed(done)), run
    child = noisy.runs.get("r1/sub/1")
    if fail_at == "ship" and undo_fails is None:  # the child completed, then its parent failed: all undone
        assert child is not None and child.status is RunStatus.COMPENSATED
        assert noisy.state.steps["sub"].status is StepStatus.COMPENSATED
        assert noisy.state.status is RunStatus.COMPENSATED
    elif fail_at == "ship":  # the child cannot undo a step: both runs wait for a person
        assert child is not None and child.status is RunStatus.COMPENSATION_FAILED
        assert noisy.state.status is RunStatus.COMPENSATION_FAILED
