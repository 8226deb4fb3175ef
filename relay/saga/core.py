"""The base of the engine's transitions: lookups, the timeline, timers and the run's end."""

from __future__ import annotations

from typing import Any

from relay.policy.model import Verdict
from relay.saga.gate import Gate
from relay.saga.model import Step, Workflow
from relay.saga.state import Command, Finished, RunState, RunStatus, SetTimer, StepStatus, Timer

UNDO = "undo:"  # in-flight targets and gate requests of a step's compensation: undo:<step key>


class RunCore:
    """What every transition uses: the step specs, the run's data, the timeline, timers, the end."""

    def __init__(self, wf: Workflow, state: RunState, now: float, gate: Gate | None = None) -> None:
        self.wf, self.state, self.now, self.gate = wf, state, now, gate
        self.commands: list[Command] = []
        self._members = wf.members_of()
        self._handlers = {s.on_error: s.id for s in wf.steps.values() if s.on_error}

    # -- lookups ------------------------------------------------------------------------------
    def spec(self, key: str) -> Step:
        return self.wf.steps[key.split("[", 1)[0]]

    def child_run_id(self, key: str, attempt: int) -> str:
        """The run a subworkflow step's attempt starts (``wire.parent_of`` reads it back)."""
        return f"{self.state.run_id}/{key}/{attempt}"

    def is_member(self, key: str) -> bool:
        return key in self._members or "[" in key

    def data(self, item: Any = None) -> dict[str, Any]:
        steps = {k: {"output": st.output} for k, st in self.state.steps.items() if st.status is StepStatus.SUCCEEDED
                 or st.status in (StepStatus.COMPENSATING, StepStatus.COMPENSATED, StepStatus.COMPENSATION_FAILED)}
        return {"input": self.state.input, "steps": steps, "item": item}

    def log(self, step: str | None, outcome: str, *, attempt: int | None = None, command_id: str | None = None,
            error: str | None = None, verdict: Verdict | None = None) -> None:
        entry = {"at": self.now, "step": step, "attempt": attempt, "command_id": command_id, "outcome": outcome,
                 "error": error, "definition": self.wf.hash[:12]}
        if verdict is not None:  # the gate's: which rule of which policy (rule None: its default)
            entry.update(decision=verdict.decision.value, rule=verdict.rule_id or "(default)",
                         policy=verdict.policy_hash[:12])
        # a key whose value is None is left out (read entries with .get): stored as it is, each time
        self.state.timeline.append({k: v for k, v in entry.items() if v is not None})

    def timer(self, timer_id: str, fire_at: float, kind: str, step: str | None, attempt: int = 0) -> None:
        self.state.timers[timer_id] = Timer(kind, step, attempt)
        self.commands.append(SetTimer(timer_id, self.state.run_id, fire_at))

    def drop_timers(self, key: str) -> None:
        for tid in [t for t, timer in self.state.timers.items() if timer.step == key]:
            del self.state.timers[tid]

    def end(self, status: RunStatus, reason: str | None) -> None:
        self.state.status, self.state.reason = status, reason or self.state.reason
        self.state.timers.clear()
        for st in self.state.steps.values():
            if st.status is StepStatus.RUNNING and st.command_id not in self.state.inflight:
                st.status = StepStatus.NOT_RUN  # was waiting to be sent again
        output = {k: s.output for k, s in self.state.steps.items() if s.status is StepStatus.SUCCEEDED and "[" not in k}
        self.commands.append(Finished(self.state.run_id, status, output if status is RunStatus.COMPLETED else None,
                                      self.state.reason, answers=self.state.undo_request))
        self.log(None, f"run {status.value}", error=self.state.reason)
