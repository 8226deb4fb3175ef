"""The saga engine: ``decide(workflow, state, event) -> (state, commands)``, pure and deterministic.

No I/O, no clock (time comes with each event), no randomness: the coordinator stores the new
state together with the commands it sends (one transaction), and command ids follow from run id,
step and attempt, so a command sent again is dropped by its participant. Guarantees:

- a reply, timer or approval that no longer matters (a duplicate, a late reply of an older
  attempt, a timer of a step that moved on) changes nothing and emits nothing;
- a step runs when its dependencies succeeded, or failed and their ``on_error`` step succeeded;
  a skipped dependency (false condition) skips it; parallel members start with their parallel
  step, at most ``max_parallel`` at once; for_each children likewise;
- a retriable failure or a timeout retries with the step's backoff until ``max_attempts``
  (``on_failure: retry``: until the run's deadline); then, or on a fatal failure, the run fails:
  nothing new starts, commands in flight are awaited, and the steps that completed (or timed out,
  so may have acted) are compensated one at a time in reverse completion order, each
  compensation with its own retries, within the rollback window. A compensation that cannot
  succeed ends the run ``compensation_failed`` (the manual queue); ``RetryRun`` resumes it.
- a step with ``on_failure: retry`` that fails fatally ends the run ``failed`` without
  compensating (an operator fixes the cause and retries it).
- a subworkflow step whose child run completed is undone by asking the child to compensate
  itself (:mod:`relay.saga.childundo`); its answer comes back as a ``ChildDone``.
"""

from __future__ import annotations

from relay.saga import steps as _steps
from relay.saga.gate import Gate
from relay.saga.model import Workflow
from relay.saga.state import (
    TERMINAL,
    Approval,
    Cancel,
    ChildDone,
    Command,
    CompensateRequest,
    Event,
    Reply,
    RetryRun,
    RunState,
    RunStatus,
    Start,
    StepState,
    StepStatus,
    Throttled,
    Timer,
    TimerFired,
    clone,
)
from relay.saga.undo import UNDO

REOPENING = (RetryRun, CompensateRequest)  # the events an ended run still acts on


def decide(wf: Workflow, state: RunState | None, event: Event, gate: Gate | None = None,
           ) -> tuple[RunState, list[Command]]:
    """The run's next state and the commands to send once it is stored; with ``gate``, every
    command passes the policy gate first (:mod:`relay.saga.gating`)."""
    if isinstance(event, Start):
        if state is not None:
            return state, []  # a duplicate start: the run exists
        d = _steps.Decider(wf, _new_run(wf, event), event.at, gate)
        d.start(event)
    else:
        if state is None:
            raise ValueError(f"{type(event).__name__} for a run that was never started")
        d = _steps.Decider(wf, clone(state), event.at, gate)
        if state.status not in TERMINAL or isinstance(event, REOPENING):
            _apply(d, event)
    d.advance()
    d.state.updated_at = max(d.state.updated_at, event.at)
    return d.state, d.commands


def _new_run(wf: Workflow, event: Start) -> RunState:
    return RunState(run_id=event.run_id, workflow=wf.id, definition_hash=wf.hash, input=dict(event.input),
                    started_at=event.at, updated_at=event.at, business_key=event.business_key,
                    parent_workflow=event.parent_workflow, initiator=event.initiator,
                    steps={sid: StepState() for sid in wf.steps})


def _apply(d: _steps.Decider, event: Event) -> None:
    match event:
        case Reply():
            _reply(d, event)
        case TimerFired():
            timer = d.state.timers.pop(event.timer_id, None)
            if timer is not None:
                _timer(d, timer)
        case Approval():
            d.approval(event)
        case Cancel() if d.state.status is RunStatus.COMPENSATING:  # it fails already: it ends compensated
            d.log(None, "cancel ignored: the run is already compensating", error=event.reason)
        case Cancel():
            d.state.cancelled = True
            d.fail(event.reason)
        case ChildDone() if event.request is not None:
            d.child_undone(event)
        case ChildDone():
            key = d.state.inflight.pop(event.child_run_id, None)
            if key is not None:
                d.finished(key, event.status is RunStatus.COMPLETED, event.output,
                           None if event.status is RunStatus.COMPLETED else f"child run {event.status.value}",
                           retriable=False)
        case RetryRun():
            d.retry_run()
        case CompensateRequest():
            d.undo_requested(event)
        case Throttled():
            d.throttled(event)


def _reply(d: _steps.Decider, r: Reply) -> None:
    target = d.state.inflight.pop(r.command_id, None)
    if target is None:
        return  # a duplicate or an answer to an attempt that timed out: nothing changes
    d.drop_timers(target.removeprefix(UNDO))
    if target.startswith(UNDO):
        d.undo_finished(target.removeprefix(UNDO), r.ok, r.error, r.retriable)
    else:
        d.finished(target, r.ok, r.output, r.error, r.retriable, unknown=r.uncertain)


def _timer(d: _steps.Decider, t: Timer) -> None:
    st = d.state.steps.get(t.step) if t.step else None
    match t.kind:
        case "deadline":
            d.fail("the run's deadline passed")
        case "rollback" if d.undo_held():
            d.extend_rollback_window()
        case "rollback":
            if d.state.status is RunStatus.COMPENSATING:
                d.compensation_failed(None, f"compensation did not finish within the rollback window "
                                            f"({d.wf.rollback_window_s:g} s)")
        case "backoff" if st is not None and st.status is StepStatus.RUNNING and st.command_id is None:
            d.dispatch(t.step or "", t.attempt)
        case "timeout" if st is not None and st.command_id is not None and st.attempt == t.attempt:
            d.state.inflight.pop(st.command_id, None)
            st.uncertain = True
            d.finished(t.step or "", False, None, f"no reply within {d.spec(t.step or '').timeout_s:g} s "
                       f"(attempt {t.attempt})", retriable=True, timed_out=True)
        case "undo_timeout" if st is not None and st.status is StepStatus.COMPENSATING and st.undo_attempt == t.attempt:
            d.state.inflight.pop(d.undo_command_id(t.step or "", t.attempt), None)
            d.undo_finished(t.step or "", False, f"no reply within the compensation timeout (attempt {t.attempt})",
                            retriable=True)
        case "undo_backoff" if st is not None and st.status is StepStatus.COMPENSATING:
            d.dispatch_undo(t.step or "", t.attempt)
        case "throttle" if st is not None and st.status is StepStatus.RUNNING and st.command_id is None:
            d.dispatch(t.step or "", t.attempt, reserved=True)
        case "undo_throttle" if st is not None and st.status is StepStatus.COMPENSATING and \
                (UNDO + (t.step or "")) not in d.state.inflight.values():
            d.dispatch_undo(t.step or "", t.attempt, reserved=True)
        case "gate_expiry" | "undo_gate_expiry":
            target = (UNDO if t.kind == "undo_gate_expiry" else "") + (t.step or "")
            if d.gate_expired(target, t.attempt):
                d.gate_resume(target, False, "denied: the approval request expired")
        case "delay" if st is not None and st.status is StepStatus.WAITING:
            d.succeed(t.step or "", None)
        case "expiry" if st is not None and st.status is StepStatus.WAITING:
            d.settle_failure(t.step or "", StepStatus.TIMED_OUT, "the approval expired")

