"""The engine's state transitions: scheduling ready steps, outcomes, retries and the run's end.

Used by :func:`relay.saga.engine.decide` only; one :class:`Decider` per event, working on a copy
of the run's state and collecting the commands. Compensation lives in :mod:`relay.saga.undo`, the
undo of a completed child run in :mod:`relay.saga.childundo`.
"""

from __future__ import annotations

from typing import Any

from relay.governance.approvals import ApprovalState
from relay.policy.model import Verdict
from relay.saga import expr
from relay.saga.childundo import ChildUndo
from relay.saga.core import UNDO
from relay.saga.gating import Passage
from relay.saga.model import OnFailure, Step, StepType, Strategy
from relay.saga.state import (
    FAILURES,
    TERMINAL,
    Approval,
    Dispatch,
    RequestApproval,
    RunStatus,
    Start,
    StartChild,
    StepState,
    StepStatus,
)

ACTIVE = (StepStatus.RUNNING, StepStatus.WAITING)


class Decider(ChildUndo):
    """One event's worth of transitions on a copy of the run's state (see the module docstring)."""

    # -- start ----------------------------------------------------------------------------------
    def start(self, event: Start) -> None:
        self.log(None, "started")
        if self.wf.deadline_s:
            self.timer(f"{event.run_id}/deadline", event.at + self.wf.deadline_s, "deadline", None)
        for s in self.wf.steps.values():  # a for_each over the run's input is checked before anything is sent
            if s.type is StepType.FOR_EACH and s.items and all(r.startswith("input") for r in expr.references(s.items)):
                items = self._items(s.id, s)
                if items is None:
                    self.state.status = RunStatus.FAILED
                    self.end(RunStatus.FAILED, f"step {s.id!r}: {self.state.steps[s.id].error}")
                    return

    # -- the loop -------------------------------------------------------------------------------
    def advance(self) -> None:
        progress = True
        while progress and self.state.status not in TERMINAL:
            if self.state.status is RunStatus.COMPENSATING:
                self.compensate()
                return
            fatal = self.fatal_failure()
            if fatal is not None:
                key, reason = fatal
                if reason == "retry":
                    self.stop_forward()
                    self.end(RunStatus.FAILED, f"step {key!r} failed and must not be compensated: "
                                               f"{self.state.steps[key].error}")
                else:
                    self.fail(f"step {key!r}: {reason}")
                continue
            progress = self._schedule() | self._composites()
        if self.state.status not in TERMINAL and self.state.status is not RunStatus.COMPENSATING:
            self._maybe_complete()

    def fatal_failure(self) -> tuple[str, str] | None:
        for key, st in self.state.steps.items():
            if st.status not in FAILURES or self.is_member(key):
                continue
            spec = self.spec(key)
            if spec.on_error is not None and self.state.steps[spec.on_error].status not in FAILURES:
                continue  # the handler runs (or ran): its outcome decides
            if spec.on_failure is OnFailure.RETRY and st.status is StepStatus.FAILED:
                return key, "retry"
            return key, st.error or st.status.value
        return None

    def _ready(self, key: str, spec: Step) -> bool | None:
        """True: start it; None: skip it (needs a skipped step); False: not yet."""
        for dep in spec.depends_on:
            st = self.state.steps[dep]
            if st.status is StepStatus.SKIPPED:
                return None
            if st.status is StepStatus.SUCCEEDED:
                continue
            handler = self.spec(dep).on_error
            if st.status in FAILURES and handler and self.state.steps[handler].status is StepStatus.SUCCEEDED:
                continue
            return False
        if key in self._handlers:
            return self.state.steps[self._handlers[key]].status in FAILURES
        if key in self._members:
            parent = self.wf.steps[self._members[key]]
            if self.state.steps[parent.id].status is not StepStatus.RUNNING:
                return False
            busy = sum(self.state.steps[m].status in ACTIVE for m in parent.members)
            return parent.max_parallel is None or busy < parent.max_parallel
        return True

    def _schedule(self) -> bool:
        progress = False
        for key, spec in self.wf.steps.items():
            if self.state.steps[key].status is not StepStatus.PENDING:
                continue
            ready = self._ready(key, spec)
            if ready is None:
                self.state.steps[key].status = StepStatus.SKIPPED
                self.log(key, "skipped: a step it needs was skipped")
                progress = True
            elif ready:
                self._begin(key, spec)
                progress = True
        return progress

    def _begin(self, key: str, spec: Step) -> None:
        st = self.state.steps[key]
        self.log(key, f"{spec.type.value} started")
        match spec.type:
            case StepType.WORKER:
                st.status = StepStatus.RUNNING
                self.dispatch(key, st.attempt + 1)
            case StepType.PARALLEL:
                st.status = StepStatus.RUNNING
            case StepType.FOR_EACH:
                self._fan_out(key, spec)
            case StepType.DELAY:
                st.status = StepStatus.WAITING
                self.timer(f"{self.state.run_id}/{key}/delay", self.now + (spec.delay_s or 0), "delay", key)
            case StepType.CONDITION:
                self._condition(key, spec)
            case StepType.APPROVAL:
                self._await_approval(key, spec)
            case StepType.SUBWORKFLOW:
                st.status, st.attempt = StepStatus.RUNNING, st.attempt + 1
                child = self.child_run_id(key, st.attempt)
                st.command_id = child
                self.state.inflight[child] = key
                self.commands.append(StartChild(child, spec.workflow or "", self._render(key, spec.input),
                                                self.state.run_id, key, self.state.initiator))

    def _render(self, key: str, template: Any, item: Any = None) -> Any:
        try:
            return expr.render(template, self.data(item))
        except expr.TemplateError as exc:
            self.settle_failure(key, StepStatus.FAILED, f"input: {exc}")
            return None

    def _condition(self, key: str, spec: Step) -> None:
        try:
            truth = expr.evaluate(spec.expression or "", self.data())
        except expr.TemplateError as exc:
            self.settle_failure(key, StepStatus.FAILED, f"expression: {exc}")
            return
        if truth:
            self.succeed(key, True)
        else:
            self.state.steps[key].status = StepStatus.SKIPPED
            self.log(key, "skipped: condition false")

    def _await_approval(self, key: str, spec: Step) -> None:
        st = self.state.steps[key]
        st.status = StepStatus.WAITING
        expires = self.now + spec.timeout_s if spec.timeout_s else None
        if key in self.state.approvals:  # decided before the step was reached: not lost
            self._decide_approval(key, self.state.approvals[key])
            return
        self.commands.append(RequestApproval(self.state.run_id, key, self._render(key, spec.input), expires))
        if expires is not None:
            self.timer(f"{self.state.run_id}/{key}/expiry", expires, "expiry", key)

    def approval(self, a: Approval) -> None:
        target = self.open_gate(a.step)
        if target is not None:  # the policy gate's request for this step's command (or its undo)
            outcome = self.gate_vote(target, a)
            if outcome is not None and outcome is not ApprovalState.PENDING:
                self.gate_resume(target, outcome is ApprovalState.APPROVED,
                                 f"denied by {a.by or '?'}" + (f": {a.reason}" if a.reason else ""))
            return
        spec = self.wf.steps.get(a.step)
        if spec is None or spec.type is not StepType.APPROVAL or a.step in self.state.approvals:
            return  # not an approval step, or already decided: the first decision stands
        self.state.approvals[a.step] = {"approved": a.approved, "by": a.by, "reason": a.reason, "at": a.at}
        self.log(a.step, f"{'approved' if a.approved else 'denied'} by {a.by or '?'}", error=a.reason or None)
        if self.state.steps[a.step].status is StepStatus.WAITING:
            self._decide_approval(a.step, self.state.approvals[a.step])

    def _decide_approval(self, key: str, decision: dict[str, Any]) -> None:
        self.drop_timers(key)
        if decision["approved"]:
            self.succeed(key, {"approved_by": decision["by"], "reason": decision["reason"]})
        else:
            self.settle_failure(key, StepStatus.DENIED, f"denied by {decision['by'] or '?'}: {decision['reason']}")

    def gate_resume(self, target: str, approved: bool, why: str) -> None:
        """A gate's request was decided (or expired): send what it held, or deny it."""
        key = target.removeprefix(UNDO)
        st, g = self.state.steps[key], self.state.gates[target]
        if target != key:
            if st.status is StepStatus.COMPENSATING and target not in self.state.inflight.values():
                if approved:
                    self.dispatch_undo(key, int(g["attempt"]))
                else:
                    self.compensation_failed(key, f"the compensation of {key!r} was {why}")
        elif st.status is StepStatus.WAITING:
            if approved:
                self.dispatch(key, int(g["attempt"]))
            else:
                self.settle_failure(key, StepStatus.DENIED, why)

    # -- worker commands ----------------------------------------------------------------------
    def dispatch(self, key: str, attempt: int, *, reserved: bool = False) -> None:
        """Send attempt ``attempt`` of ``key`` through the gate (``reserved``: its throttle slot is held)."""
        spec, st = self.spec(key), self.state.steps[key]
        item = st.output if "[" in key else None  # a for_each child keeps its item until it has a reply
        payload = self._render(key, spec.input, item)
        expected = self._render(key, spec.expected_version, item) if spec.expected_version else None
        if st.status in FAILURES:
            return  # the input (or the expected version) could not be rendered
        screened = self.screen(key, spec.topic or "", payload, attempt)
        if screened.passage is Passage.DENIED:
            st.attempt = attempt
            self.settle_failure(key, StepStatus.DENIED, screened.reason, verdict=screened.verdict)
            return
        if screened.passage is Passage.HELD:
            st.status, st.command_id = StepStatus.WAITING, None
            return
        run = self.state.run_id
        cmd = f"{run}/{key}/{attempt}"
        st.attempt, st.command_id, st.status = attempt, cmd, StepStatus.RUNNING
        self.state.inflight[cmd] = key
        throttle, bucket = screened.bucket(reserved)
        self.commands.append(Dispatch(cmd, run, key, attempt, spec.topic or "", payload, f"{run}/{key}",
                                      throttle=throttle, bucket=bucket, expected_version=expected,
                                      on_stale=spec.on_stale.value if spec.expected_version else None))
        self.log(key, "dispatched", attempt=attempt, command_id=cmd, verdict=screened.verdict)
        if spec.timeout_s:
            self.timer(f"{cmd}/timeout", self.now + spec.timeout_s, "timeout", key, attempt)

    def finished(self, key: str, ok: bool, output: Any, error: str | None, retriable: bool,
                 timed_out: bool = False, unknown: bool = False) -> None:
        """An attempt's outcome. ``timed_out``: no reply in time; ``unknown``: the participant
        could not tell whether its effect happened. Either way the step may have acted: if it
        fails for good it ends timed_out, and a failing run compensates it."""
        st, spec = self.state.steps[key], self.spec(key)
        st.command_id = None
        if ok:
            self.succeed(key, output)
            return
        self.log(key, "attempt timed out" if timed_out else "attempt failed", attempt=st.attempt, error=error)
        timed_out = timed_out or unknown
        st.uncertain = st.uncertain or timed_out
        more = spec.on_failure is OnFailure.RETRY or st.attempt - st.attempt_base < spec.retry.max_attempts
        # also while the run fails: a started step runs its course, then what completed is undone
        if retriable and more:
            self.timer(f"{self.state.run_id}/{key}/{st.attempt}/backoff", self.now + spec.retry.backoff_s(st.attempt),
                       "backoff", key, st.attempt + 1)
            return
        if st.uncertain:
            self.state.done_order.append(key)  # it may have acted: compensate it if the run fails
        self.settle_failure(key, StepStatus.TIMED_OUT if timed_out else StepStatus.FAILED, error)

    def succeed(self, key: str, output: Any) -> None:
        st = self.state.steps[key]
        st.status, st.output, st.error, st.command_id = StepStatus.SUCCEEDED, output, None, None
        self.drop_timers(key)
        self.state.done_order.append(key)
        self.log(key, "succeeded", attempt=st.attempt or None)

    def settle_failure(self, key: str, status: StepStatus, error: str | None, verdict: Verdict | None = None) -> None:
        st = self.state.steps[key]
        st.status, st.error, st.command_id = status, error, None
        self.drop_timers(key)
        self.log(key, status.value, attempt=st.attempt or None, error=error, verdict=verdict)

    # -- parallel and for_each ------------------------------------------------------------------
    def _items(self, key: str, spec: Step) -> list[Any] | None:
        try:
            items = expr.render(spec.items, self.data())
        except expr.TemplateError as exc:
            self.settle_failure(key, StepStatus.FAILED, f"items: {exc}")
            return None
        if not isinstance(items, list):
            self.settle_failure(key, StepStatus.FAILED, f"items = {str(items)[:80]!r}; expected a list")
            return None
        if len(items) > spec.max_items:
            self.settle_failure(key, StepStatus.FAILED, f"items: {len(items)} items, over the cap of "
                                                       f"{spec.max_items} (max_items); nothing was dispatched")
            return None
        return items

    def _fan_out(self, key: str, spec: Step) -> None:
        items = self._items(key, spec)
        if items is None:
            return
        st = self.state.steps[key]
        st.status = StepStatus.RUNNING
        st.children = [f"{key}[{i}]" for i in range(len(items))]
        for child, item in zip(st.children, items, strict=True):
            self.state.steps[child] = StepState(output=item)  # the item, until the child's reply replaces it

    def _composites(self) -> bool:
        progress = False
        for key, spec in self.wf.steps.items():
            st = self.state.steps[key]
            if st.status is not StepStatus.RUNNING:
                continue
            if spec.type is StepType.PARALLEL:
                progress |= self._settle_group(key, list(spec.members), spec.strategy)
            elif spec.type is StepType.FOR_EACH:
                busy = sum(self.state.steps[c].status in ACTIVE for c in st.children)
                for child in st.children:
                    cst = self.state.steps[child]
                    if cst.status is StepStatus.PENDING and (spec.max_parallel is None or busy < spec.max_parallel):
                        self.dispatch(child, cst.attempt + 1)
                        busy, progress = busy + 1, True
                progress |= self._settle_group(key, st.children, Strategy.ALL)
        return progress

    def _settle_group(self, key: str, members: list[str], strategy: Strategy) -> bool:
        states = [self.state.steps[m] for m in members]
        ok = [s.status in (StepStatus.SUCCEEDED, StepStatus.SKIPPED) for s in states]
        failed = [s.status in FAILURES and not self._handled(m) for m, s in zip(members, states, strict=True)]
        outputs = {m: s.output for m, s in zip(members, states, strict=True) if s.status is StepStatus.SUCCEEDED}
        settled_ok = [a or self._handled(m) for m, a in zip(members, ok, strict=True)]
        if strategy is Strategy.ANY and any(s.status is StepStatus.SUCCEEDED for s in states):
            for s in states:
                if s.status is StepStatus.PENDING:
                    s.status = StepStatus.NOT_RUN
            self.succeed(key, outputs)
        elif all(ok) or (strategy is Strategy.ALL and all(settled_ok)):
            self.succeed(key, [s.output for s in states] if "[" in (members[0] if members else "") else outputs)
        elif (strategy is Strategy.ALL and any(failed)) or (strategy is Strategy.ANY and all(failed)):
            bad = [m for m, f in zip(members, failed, strict=True) if f]
            self.settle_failure(key, StepStatus.FAILED, f"{', '.join(bad)} failed: {self.state.steps[bad[0]].error}")
        else:
            return False
        return True

    def _handled(self, key: str) -> bool:
        handler = self.spec(key).on_error if "[" not in key else None
        return bool(handler) and self.state.steps[handler or ""].status is StepStatus.SUCCEEDED

    # -- the end ----------------------------------------------------------------------------------
    def _maybe_complete(self) -> None:
        steps = self.state.steps.values()
        if any(s.status in ACTIVE for s in steps) or self.state.inflight:
            self.state.status = (RunStatus.AWAITING_APPROVAL if any(
                s.status is StepStatus.WAITING and (self.spec(k).type is StepType.APPROVAL or k in self.state.gates)
                for k, s in self.state.steps.items()) else RunStatus.RUNNING)
            return
        for st in steps:
            if st.status is StepStatus.PENDING:
                st.status = StepStatus.NOT_RUN
        self.end(RunStatus.COMPLETED, None)
