"""Undoing a completed child run: the parent's request and the child's answer.

A mixin of :class:`relay.saga.steps.Decider`. A subworkflow step whose child run completed is on
its parent's compensation stack like any compensable step; its undo is a
:class:`~relay.saga.state.CompensateChild` request (command id ``<parent>/<step>/undo/<attempt>``)
to the child run, which arrives there as a :class:`~relay.saga.state.CompensateRequest`:

- a ``completed`` child compensates what it completed, last completed first, by the usual rules
  (its own completed children too), and ends ``compensated`` (also when nothing needed undoing:
  nothing it did remains) or ``compensation_failed``;
- a child still running fails as if cancelled: what is out runs its course, then what completed is
  undone; a ``compensating`` child answers when it ends;
- a ``compensation_failed`` child resumes compensating, as an operator's retry would (the parent
  asks again only when an operator retried the parent);
- a child that had ended otherwise (``compensated``, ``cancelled``, ``failed``) tells its end again.

Requests carry the attempt: one no newer than the last the child saw (a duplicate or a late one)
changes nothing and sends nothing, and a run that is not a child ignores requests. The answer is the
child's :class:`~relay.saga.state.Finished`, which reaches the parent as a ``ChildDone`` naming the
request: ``compensated`` or ``cancelled`` compensates the step, anything else ends the parent
``compensation_failed`` naming the step and the child run. An answer to a request the parent no
longer waits for (a duplicate, or one it timed out) changes nothing.
"""

from __future__ import annotations

from relay.saga.model import StepType
from relay.saga.state import TERMINAL, ChildDone, CompensateRequest, Finished, RunStatus
from relay.saga.undo import UNDO, Undo

ANSWERS = TERMINAL - {RunStatus.COMPLETED}  # how a child asked to undo itself can end
UNDONE = frozenset({RunStatus.COMPENSATED, RunStatus.CANCELLED})  # the answers meaning "nothing it did remains"


class ChildUndo(Undo):
    # -- the child: asked to undo itself ----------------------------------------------------------
    def undo_requested(self, r: CompensateRequest) -> None:
        s = self.state
        if s.parent_workflow is None or r.attempt <= s.undo_request_attempt:
            return  # not a child run, or a duplicate or late request: nothing changes
        s.undo_request, s.undo_request_attempt = r.request_id, r.attempt
        self.log(None, "undo requested by the parent run", attempt=r.attempt, command_id=r.request_id)
        reason = f"the parent run {r.parent_run_id} undoes its step {r.parent_step!r}"
        if s.status is RunStatus.COMPLETED:
            self.begin_compensation(reason)
        elif s.status is RunStatus.COMPENSATION_FAILED:
            self.retry_run(by="the parent run")
        elif s.status in TERMINAL:
            self._answer_again()
        elif s.status is not RunStatus.COMPENSATING:
            self.fail(reason)  # still running: stops, then undoes what completed

    def _answer_again(self) -> None:
        s = self.state
        self.commands.append(Finished(s.run_id, s.status, None, s.reason, answers=s.undo_request, again=True))
        self.log(None, f"answered the parent again: run {s.status.value}", command_id=s.undo_request)

    # -- the parent: the child's answer -----------------------------------------------------------
    def child_undone(self, e: ChildDone) -> None:
        request = e.request or ""
        target = self.state.inflight.get(request)
        if target is None or not target.startswith(UNDO) or e.status not in ANSWERS:
            return  # a duplicate, an answer to an attempt that timed out, or not an answer
        key = target.removeprefix(UNDO)
        if self.spec(key).type is not StepType.SUBWORKFLOW or \
                e.child_run_id != self.child_run_id(key, self.state.steps[key].attempt):
            return  # not from the child run this step started
        del self.state.inflight[request]
        self.drop_timers(key)
        if e.status in UNDONE:
            self.undo_finished(key, True, None, retriable=False)
        else:
            self.undo_finished(key, False, f"child run {e.child_run_id} ended {e.status.value}"
                               + (f": {e.reason}" if e.reason else ""), retriable=False)
