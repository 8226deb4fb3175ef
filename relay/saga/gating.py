"""The policy gate in the engine: a verdict before every command a run sends (pure).

A mixin of :class:`relay.saga.steps.Decider` (the base of its compensation mixin). With a
:class:`~relay.saga.gate.Gate`, each forward command and each compensation is screened on its
facts (:func:`relay.saga.gate.facts`) and the verdict is on the run's timeline, naming the rule
and the policy's hash:

- ``allow``: sent.
- ``deny``: not sent. A forward step is ``denied`` (the run fails and compensates what
  completed); a compensation ends the run ``compensation_failed`` (the manual queue).
- ``require_approval``: sent once an approval bound to the hash of this very payload
  (:func:`relay.saga.gate.payload_hash`) counts (the ``approval_present`` fact). Until then the
  step waits (a compensation holds) and a ``SagaApprovalRequested`` names the hash, the rule, who
  may decide and until when (:mod:`relay.governance.approvals` says which decisions count). An
  expired request denies, or is asked once more of ``escalate_to`` when the rule says so.
- ``throttle``: sent with its bucket named. The coordinator reserves the bucket's next slot in
  Postgres (one bucket per key, shared by runs and coordinators); a slot in the future comes back
  as :class:`~relay.saga.state.Throttled`, and the command waits on a durable timer for it, then
  goes out on that slot without taking another.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from relay.governance.approvals import (
    ApprovalRequest,
    ApprovalState,
    Decision as Vote,
    approvers_needed,
    decide as count_vote,
)
from relay.policy.evaluate import evaluate
from relay.policy.model import ApprovalTerms, Decision, EffectClass, OnExpiry, Throttle, Verdict
from relay.saga.core import UNDO, RunCore
from relay.saga.gate import facts, payload_hash
from relay.saga.state import Approval, RequestApproval, RunState, Throttled

WITHDRAWN = "withdrawn"  # a gate request the run no longer waits for (it failed meanwhile)


class Passage(StrEnum):
    GO = "go"          # send it (a throttle verdict: through the bucket, unless its slot is held)
    DENIED = "denied"  # never send it
    HELD = "held"      # not yet: an approval bound to its payload is awaited


@dataclass(frozen=True)
class Screened:
    passage: Passage
    verdict: Verdict | None = None   # None: no gate
    reason: str | None = None        # DENIED: why

    def bucket(self, reserved: bool) -> tuple[Throttle | None, str | None]:
        """(throttle, bucket) for the Dispatch: the coordinator takes a slot first, unless one is held."""
        v = self.verdict
        if v is None or v.decision is not Decision.THROTTLE or reserved:
            return None, None
        return v.throttle, v.bucket


def request_of(state: RunState, target: str) -> tuple[ApprovalRequest, list[Vote]]:
    """The gate's request for ``target`` as the approval rules see it, with the votes counted."""
    g = state.gates[target]
    request = ApprovalRequest(state.run_id, target, g["hash"], str(g.get("rule") or ""), g["expires_at"],
                              frozenset(g["scope"]), state.initiator, g["four_eyes"], g["needed"])
    return request, [Vote(d["by"], d["approved"], g["hash"], d["at"]) for d in g["decisions"]]


class Gated(RunCore):
    def screen(self, key: str, topic: str, payload: Any, attempt: int, *, undo: bool = False) -> Screened:
        """The gate's verdict on sending ``payload`` to ``topic`` for step ``key`` (its undo)."""
        if self.gate is None:
            return Screened(Passage.GO)
        target = UNDO + key if undo else key
        g = self.state.gates.get(target)  # the payload is hashed only when an approval is in play
        digest = payload_hash(topic, payload) if g is not None else None
        granted = g is not None and g["state"] == ApprovalState.APPROVED.value and g["hash"] == digest
        v = evaluate(self.gate.policy, facts(self.wf, self.spec(key), payload, env=self.gate.env, compensation=undo,
                                             approval_present=granted))
        if v.decision is Decision.DENY:
            return Screened(Passage.DENIED, v, f"denied by policy rule {v.rule_id or '(default)'} "
                                               f"(policy {v.policy_hash[:12]})")
        if v.decision is Decision.REQUIRE_APPROVAL and not granted:
            self._request(key, target, topic, payload, digest or payload_hash(topic, payload), attempt, v)
            return Screened(Passage.HELD, v)
        return Screened(Passage.GO, v)

    def _request(self, key: str, target: str, topic: str, payload: Any, digest: str, attempt: int, v: Verdict,
                 ) -> None:
        old = self.state.gates.get(target)
        if old is not None and old["state"] == ApprovalState.PENDING.value and old["hash"] == digest:
            return  # asked already, for this very payload
        terms = v.approval or ApprovalTerms()
        needed = terms.approvers or approvers_needed(self.spec(key).effect or EffectClass.NONE)
        g = {"hash": digest, "rule": v.rule_id, "policy": v.policy_hash, "state": ApprovalState.PENDING.value,
             "attempt": attempt, "topic": topic, "requested_at": self.now, "scope": list(terms.scope),
             "four_eyes": terms.four_eyes, "needed": needed, "on_expiry": terms.on_expiry.value,
             "escalate_to": list(terms.escalate_to), "timeout_s": terms.timeout_s, "escalated": False,
             "decisions": [], "n": (old["n"] + 1) if old is not None else 1, "input": payload}
        self._ask(key, target, g)
        self.log(key, f"{'compensation ' if target != key else ''}awaiting approval", attempt=attempt, verdict=v)

    def _ask(self, key: str, target: str, g: dict[str, Any]) -> None:
        """Store request ``g`` (new or escalated), send it and arm its expiry."""
        g = {**g, "expires_at": self.now + float(g["timeout_s"])}
        self.state.gates[target] = g
        run = self.state.run_id
        request_id = self._request_id(target, g)
        shown = {k: g[k] for k in ("hash", "rule", "policy", "scope", "four_eyes", "needed", "on_expiry")}
        self.commands.append(RequestApproval(run, key, g["input"], g["expires_at"], gate={
            **shown, "request_id": request_id, "compensation": target != key, "initiator": self.state.initiator}))
        kind = "undo_gate_expiry" if target != key else "gate_expiry"
        self.timer(f"{request_id}/expiry", g["expires_at"], kind, key, int(g["n"]))

    def withdraw(self, key: str) -> None:
        """The run stopped waiting on ``key`` (it fails): its pending request no longer counts, and
        a retry of the run asks again (a new request, a new expiry)."""
        g = self.state.gates.get(key)
        if g is not None and g["state"] == ApprovalState.PENDING.value:
            self.state.gates[key] = {**g, "state": WITHDRAWN}

    def open_gate(self, step: str) -> str | None:
        """The target (``step`` or its undo) with an approval request pending, if any."""
        for target in (step, UNDO + step):
            g = self.state.gates.get(target)
            if g is not None and g["state"] == ApprovalState.PENDING.value:
                return target
        return None

    def gate_vote(self, target: str, a: Approval) -> ApprovalState | None:
        """Count ``a`` on the pending request of ``target``; the request's new state, or None
        when the vote did not count (the refusal is on the timeline)."""
        g, key = self.state.gates[target], target.removeprefix(UNDO)
        if not a.payload_hash:
            self.log(key, "approval refused", error=f"{a.by or '?'}'s decision names no payload hash; expected "
                                                    f"the request's, {g['hash'][:12]}")
            return None
        request, counted = request_of(self.state, target)
        out = count_vote(request, counted, Vote(a.by, a.approved, a.payload_hash, a.at, a.reason))
        if not out.counted:
            self.log(key, "approval refused", error=out.refusal)
            return None
        vote = {"by": a.by, "approved": a.approved, "at": a.at, **({"reason": a.reason} if a.reason else {})}
        self.state.gates[target] = {**g, "decisions": [*g["decisions"], vote], "state": out.state.value}
        approvals = sum(d["approved"] for d in self.state.gates[target]["decisions"])
        word = "approved" if a.approved else "denied"
        self.log(key, f"{word} by {a.by}" + (f" ({approvals} of {g['needed']})" if g["needed"] > 1 else ""),
                 error=a.reason or None)
        if out.state is not ApprovalState.PENDING:
            self._drop_expiry(target, g)
        return out.state

    def _request_id(self, target: str, g: dict[str, Any]) -> str:
        """The id of request ``g`` (its event id and its expiry timer follow from it)."""
        return f"{self.state.run_id}/{target}/gate/{g['n']}" + ("/escalated" if g["escalated"] else "")

    def _drop_expiry(self, target: str, g: dict[str, Any]) -> None:
        self.state.timers.pop(f"{self._request_id(target, g)}/expiry", None)

    def gate_expired(self, target: str, n: int) -> bool:
        """A request's expiry fired: True when it now denies; an escalation asks again instead."""
        g = self.state.gates.get(target)
        if g is None or g["state"] != ApprovalState.PENDING.value or g["n"] != n:
            return False
        key = target.removeprefix(UNDO)
        if g["on_expiry"] == OnExpiry.ESCALATE.value and not g["escalated"]:
            self.log(key, f"approval escalated to {', '.join(g['escalate_to'])}: nobody decided in time")
            self._ask(key, target, {**g, "escalated": True, "scope": g["escalate_to"]})
            return False
        self.state.gates[target] = {**g, "state": ApprovalState.DENIED.value}
        return True

    def open_gate_on_undo(self) -> str | None:
        """The compensation awaiting approval, if any (one compensation runs at a time)."""
        return next((t for t, g in self.state.gates.items()
                     if t.startswith(UNDO) and g["state"] == ApprovalState.PENDING.value), None)

    def undo_held(self) -> bool:
        """A compensation the gate holds: awaiting its approval, or its throttle slot."""
        throttled = any(t.kind == "undo_throttle" for t in self.state.timers.values())
        return throttled or self.open_gate_on_undo() is not None

    def extend_rollback_window(self) -> None:
        """The rollback window ran out while the gate holds a compensation: it runs on until the
        request expires (plus the window), or for another window while it waits for its slot."""
        s, target = self.state, self.open_gate_on_undo()
        if target is not None:
            self.log(None, "rollback window extended: a compensation awaits approval")
            until = float(s.gates[target]["expires_at"]) + self.wf.rollback_window_s
        else:
            self.log(None, "rollback window extended: a compensation waits for its throttle slot")
            until = self.now + self.wf.rollback_window_s
        self.timer(f"{s.run_id}/rollback/{s.rollbacks}", until, "rollback", None)

    def throttled(self, e: Throttled) -> None:
        """A command's bucket slot is later: unsend it and send it then (its slot is held)."""
        target = self.state.inflight.pop(e.command_id, None)
        if target is None:
            return
        key = target.removeprefix(UNDO)
        st = self.state.steps[key]
        self.state.timers.pop(f"{e.command_id}/timeout", None)  # counted from the real send
        attempt = st.undo_attempt if target != key else st.attempt
        if target == key:
            st.command_id = None  # running, waiting to be sent (like a backoff)
        self.log(key, f"throttled for {e.not_before - e.at:.3f} s", attempt=attempt, command_id=e.command_id)
        self.timer(f"{e.command_id}/throttle", e.not_before, "undo_throttle" if target != key else "throttle", key,
                   attempt)
