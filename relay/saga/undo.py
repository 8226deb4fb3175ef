"""Compensation: a failed or cancelled run undoes what completed, last completed first.

A mixin of :class:`relay.saga.steps.Decider`. When the run fails nothing new starts, steps in
backoff or waiting stop, and commands already out are awaited (a late success is compensated
too). Then the stack is built from the completion order: steps that succeeded, or timed out
(they may have acted), and declare a compensation, and subworkflow steps whose child run completed
(their undo is a :class:`CompensateChild` request: the child run compensates itself, see
:mod:`relay.saga.childundo`). One compensation runs at a time, with its own retries, inside the
rollback window; a step that declares ``no_rollback_reason`` instead is recorded as skipped with its
reason (the evidence trail says why nothing was undone).
"""

from __future__ import annotations

from typing import Any

from relay.saga import expr
from relay.saga.core import UNDO
from relay.saga.gating import Gated, Passage
from relay.saga.model import RetryPolicy, StepType
from relay.saga.state import TERMINAL, CompensateChild, Dispatch, RunStatus, StepStatus

__all__ = ["UNDO", "Undo"]


class Undo(Gated):
    def fail(self, reason: str) -> None:
        if self.state.status is RunStatus.COMPENSATING or self.state.status in TERMINAL:
            return
        self.begin_compensation(reason)

    def begin_compensation(self, reason: str) -> None:
        """The run compensates (also a completed child run its parent asked to undo itself)."""
        self.state.reason = reason
        self.state.status = RunStatus.COMPENSATING
        self.state.undo = None
        self.state.rollbacks += 1
        self.log(None, "compensation started" if not self.state.cancelled else "cancelled", error=reason)
        self.stop_forward()

    def stop_forward(self) -> None:
        """Nothing new starts; approvals and delays stop; a started command step runs its course
        (its retries too), so that its outcome says whether to undo it."""
        for key, st in self.state.steps.items():
            kind = self.spec(key).type
            if st.status is StepStatus.PENDING:
                st.status = StepStatus.NOT_RUN
            elif st.status is StepStatus.WAITING or (st.status is StepStatus.RUNNING and "[" not in key
                                                     and kind in (StepType.PARALLEL, StepType.FOR_EACH)):
                self.drop_timers(key)
                self.withdraw(key)
                st.status, st.error = StepStatus.NOT_RUN, "stopped: the run is failing"
                self.log(key, "stopped: the run is failing")

    def forward_busy(self) -> bool:
        """A command step still out or waiting to be sent again."""
        return any(st.status is StepStatus.RUNNING for st in self.state.steps.values())

    def compensate(self) -> None:
        s = self.state
        if self.forward_busy():
            return  # forward commands still out: their outcome decides what to undo
        if s.undo is None:
            s.undo = []
            self.timer(f"{s.run_id}/rollback/{s.rollbacks}", self.now + self.wf.rollback_window_s, "rollback", None)
            for key in s.done_order:
                spec = self.spec(key)
                st = s.steps[key]
                if st.status not in (StepStatus.SUCCEEDED, StepStatus.TIMED_OUT, StepStatus.COMPENSATION_FAILED):
                    continue
                if spec.type is StepType.FOR_EACH and "[" not in key:
                    continue  # its children are compensated, each on its own
                if spec.compensation is not None or spec.type is StepType.SUBWORKFLOW:
                    s.undo.append(key)  # a subworkflow step: its child run undoes itself
                elif spec.side_effect:
                    self.log(key, "compensation skipped", error=spec.no_rollback_reason)
        while s.undo:
            top = s.undo[-1]
            st = s.steps[top]
            if st.status is StepStatus.COMPENSATED:
                s.undo.pop()
                continue
            if st.status is StepStatus.COMPENSATING:
                return  # its compensation is out or waiting for its backoff
            st.status = StepStatus.COMPENSATING
            self.dispatch_undo(top, st.undo_attempt + 1)
            return
        # a child run its parent asked to undo is compensated once nothing it did remains, even if
        # nothing needed undoing: "failed" would tell the parent something is left
        undone = s.undo_request is not None or any(st.status is StepStatus.COMPENSATED for st in s.steps.values())
        final = RunStatus.CANCELLED if s.cancelled else RunStatus.COMPENSATED if undone else RunStatus.FAILED
        self.end(final, s.reason)

    def undo_command_id(self, key: str, attempt: int) -> str:
        return f"{self.state.run_id}/{key}/undo/{attempt}"

    def undo_policy(self, key: str) -> RetryPolicy:
        """How an undo is retried: the compensation's policy; the step's own for a child run's undo."""
        spec = self.spec(key)
        return spec.compensation.retry if spec.compensation is not None else spec.retry

    def dispatch_undo(self, key: str, attempt: int, *, reserved: bool = False) -> None:
        """Send the compensation of ``key`` (``reserved``: its throttle slot is held already)."""
        spec, st, run = self.spec(key), self.state.steps[key], self.state.run_id
        cmd = self.undo_command_id(key, attempt)
        comp = spec.compensation
        command: Dispatch | CompensateChild
        verdict = None
        if comp is None:  # a subworkflow step (compensate() stacks no other step without one)
            command = CompensateChild(cmd, self.child_run_id(key, st.attempt), spec.workflow or "", run, key, attempt)
        else:
            try:
                payload: Any = expr.render(comp.input, self.data(None if "[" not in key else st.output))
            except expr.TemplateError as exc:
                self.compensation_failed(key, f"compensation input: {exc}")
                return
            screened = self.screen(key, comp.topic, payload, attempt, undo=True)
            if screened.passage is Passage.DENIED:
                self.log(key, "compensation denied", attempt=attempt, error=screened.reason, verdict=screened.verdict)
                self.compensation_failed(key, f"compensation of {key!r}: {screened.reason}")
                return
            if screened.passage is Passage.HELD:
                st.undo_attempt = attempt
                return  # compensating, nothing out: an approval sends it
            throttle, bucket = screened.bucket(reserved)
            verdict = screened.verdict
            command = Dispatch(cmd, run, key, attempt, comp.topic, payload, f"{run}/{key}/undo", compensation=True,
                               throttle=throttle, bucket=bucket)
        st.undo_attempt = attempt
        self.state.inflight[cmd] = UNDO + key
        self.commands.append(command)
        self.log(key, "compensation dispatched", attempt=attempt, command_id=cmd, verdict=verdict)
        if spec.timeout_s:
            self.timer(f"{cmd}/timeout", self.now + spec.timeout_s, "undo_timeout", key, attempt)

    def undo_finished(self, key: str, ok: bool, error: str | None, retriable: bool) -> None:
        st = self.state.steps[key]
        if ok:
            st.status = StepStatus.COMPENSATED
            self.log(key, "compensated", attempt=st.undo_attempt)
            return
        self.log(key, "compensation failed", attempt=st.undo_attempt, error=error)
        policy = self.undo_policy(key)
        if retriable and st.undo_attempt - st.undo_base < policy.max_attempts:
            self.timer(f"{self.state.run_id}/{key}/undo/{st.undo_attempt}/backoff",
                       self.now + policy.backoff_s(st.undo_attempt), "undo_backoff", key, st.undo_attempt + 1)
            return
        self.compensation_failed(key, f"compensation of {key!r} failed: {error}")

    def compensation_failed(self, key: str | None, reason: str) -> None:
        if key is not None:
            self.state.steps[key].status = StepStatus.COMPENSATION_FAILED
            self.state.steps[key].error = reason
        self.end(RunStatus.COMPENSATION_FAILED, reason)

    def retry_run(self, by: str = "an operator") -> None:
        """An operator's retry: a compensation_failed run resumes compensating (the failed
        compensation first, new attempts); a failed run retries its failed steps."""
        s = self.state
        if s.status is RunStatus.COMPENSATION_FAILED:
            for st in s.steps.values():
                if st.status is StepStatus.COMPENSATION_FAILED or st.status is StepStatus.COMPENSATING:
                    st.status = StepStatus.SUCCEEDED  # back on the stack: compensate() sends it again
                    st.undo_base = st.undo_attempt
            s.inflight = {k: v for k, v in s.inflight.items() if not v.startswith(UNDO)}
            s.status, s.rollbacks = RunStatus.COMPENSATING, s.rollbacks + 1
            self.log(None, f"retried by {by}: compensation resumes")
            self.timer(f"{s.run_id}/rollback/{s.rollbacks}", self.now + self.wf.rollback_window_s, "rollback", None)
        elif s.status is RunStatus.FAILED:
            for st in s.steps.values():
                if st.status in (StepStatus.FAILED, StepStatus.TIMED_OUT, StepStatus.NOT_RUN):
                    st.status, st.error, st.attempt_base = StepStatus.PENDING, None, st.attempt
            s.status, s.reason = RunStatus.RUNNING, None
            self.log(None, "retried by an operator: failed steps run again")
