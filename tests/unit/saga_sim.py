"""An in-memory driver for the pure saga engine: participants, timers, approvals, no I/O.

It runs one root run and the child runs it starts (their workflows in ``workflows``, by id). What
runs send each other (a child's start, a parent's undo request, a child's end) goes through
:func:`relay.saga.wire.encode` and :func:`relay.saga.wire.decode`, as it would on the saga topics.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from relay.policy.bucket import reserve
from relay.saga import decide, wire
from relay.saga.gate import Gate
from relay.saga.model import Workflow
from relay.saga.state import (
    Approval,
    CompensateChild,
    Dispatch,
    Event,
    Finished,
    Reply,
    RequestApproval,
    RunState,
    SetTimer,
    Start,
    StartChild,
    Throttled,
    TimerFired,
    from_json,
    to_stored,
)

# a participant: the command -> ("ok", output) | ("fail", error, retriable) | ("silent",)
Behaviour = Callable[[Dispatch], tuple]
MAX_DELAY_S = 10.0  # the noisy run's longest delivery delay


def ok_all(cmd: Dispatch) -> tuple:
    return ("ok", {"done": cmd.step, "input": cmd.input})


@dataclass
class Sim:
    wf: Workflow
    behaviour: Behaviour = ok_all
    approvals: dict[str, bool] = field(default_factory=dict)
    rng: random.Random | None = None          # set: shuffle, duplicate and delay deliveries
    workflows: dict[str, Workflow] = field(default_factory=dict)  # what child runs run, by workflow id
    root: str = "r1"
    workflow_ids: dict[str, str] = field(default_factory=dict)  # child run id -> its workflow (from its start)
    runs: dict[str, RunState] = field(default_factory=dict)
    now: float = 0.0
    queue: list[tuple[str, Event]] = field(default_factory=list)  # (run id, event)
    timers: dict[str, SetTimer] = field(default_factory=dict)
    sent: dict[tuple[str, str], Any] = field(default_factory=dict)  # (kind, command id) -> the command
    dispatches: list[Dispatch] = field(default_factory=list)
    effects: dict[str, int] = field(default_factory=dict)   # idempotency key -> times applied (deduped: 0/1)
    approval_requests: list[str] = field(default_factory=list)
    children: list[StartChild] = field(default_factory=list)
    undo_requests: list[CompensateChild] = field(default_factory=list)
    undo_log: list[tuple[str, str]] = field(default_factory=list)  # (run, step) of each undo sent, in order
    ends: dict[str, list[Finished]] = field(default_factory=dict)  # run id -> what it told at its end(s)
    finished: Finished | None = None                                # the root run's end
    gate: Gate | None = None                                        # the policy gate, as a coordinator has it
    buckets: dict[str, float] = field(default_factory=dict)         # throttle buckets (tat), as saga_buckets
    requests: list[RequestApproval] = field(default_factory=list)

    @property
    def state(self) -> RunState | None:
        return self.runs.get(self.root)

    @state.setter
    def state(self, value: RunState) -> None:
        self.runs[self.root] = value

    def feed(self, event: Event, run: str | None = None) -> None:
        run = run or self.root
        wf = self.wf if run == self.root else self.workflows[self.workflow_ids[run]]
        state = self.runs.get(run)
        if state is not None and self.rng is not None:  # noisy: stored and loaded again, as the coordinator does
            state = from_json(json.loads(json.dumps(to_stored(state))))
        self.runs[run], commands = decide(wf, state, event, self.gate)
        for c in commands:
            self._handle(run, c)

    def _once(self, kind: str, command_id: str, c: Any) -> None:
        if (kind, command_id) in self.sent:
            assert self.sent[kind, command_id] == c, f"{command_id} sent twice with different content"
        self.sent[kind, command_id] = c

    def _handle(self, run: str, c: Any) -> None:
        if isinstance(c, Dispatch) and c.bucket is not None and c.throttle is not None:
            slot = reserve(self.buckets.get(c.bucket), self.now, c.throttle.rate_per_sec, c.throttle.burst)
            self.buckets[c.bucket] = slot.tat
            if slot.at > self.now:  # as the coordinator: the run hears of its later slot at once
                self.feed(Throttled(c.command_id, slot.at, self.now), run)
                return
        if isinstance(c, Dispatch):
            self._once("dispatch", c.command_id, c)
            self.dispatches.append(c)
            if c.compensation:
                self.undo_log.append((c.run_id, c.step))
            self._participant(c)
        elif isinstance(c, SetTimer):
            self.timers[c.timer_id] = c
        elif isinstance(c, RequestApproval):
            self.approval_requests.append(c.step)
            self.requests.append(c)
            if c.step in self.approvals:
                self.queue.append((run, Approval(c.step, self.approvals[c.step], self.now, by="tester")))
        elif isinstance(c, (StartChild, CompensateChild, Finished)):
            if isinstance(c, StartChild):
                self._once("child", c.child_run_id, c)
                self.children.append(c)
            elif isinstance(c, CompensateChild):
                self._once("undo child", c.command_id, c)
                self.undo_requests.append(c)
                self.undo_log.append((c.parent_run_id, c.parent_step))
            else:
                self.ends.setdefault(run, []).append(c)
                if run == self.root:
                    self.finished = c
            self._post(run, c)

    def _participant(self, c: Dispatch) -> None:
        outcome = self.behaviour(c)
        if outcome[0] == "ok":
            self.effects[c.idempotency_key] = 1  # the participant dedups by the key
            self.queue.append((c.run_id, Reply(c.command_id, True, self.now, output=outcome[1])))
        elif outcome[0] == "fail":
            self.queue.append((c.run_id, Reply(c.command_id, False, self.now, error=outcome[1],
                                               retriable=outcome[2])))

    def _post(self, run: str, c: Any) -> None:
        """What one run sends another, through the wire format of the saga topics."""
        state = self.runs[run]
        env = wire.Envelope(state.workflow, correlation_id=run, causation_id="sim",
                            parent_workflow=state.parent_workflow)
        for ev in wire.encode(c, env):
            if ev.aggregatetype.startswith(wire.SAGA_PREFIX):
                self.queue.append((ev.aggregateid, wire.decode(ev.type, ev.payload, self.now, ev.aggregateid)))
                if ev.type == wire.SagaEvent.START:
                    self.workflow_ids[ev.aggregateid] = wire.workflow_of(ev.payload)

    def deliver(self, i: int = 0) -> None:
        run, event = self.queue.pop(i)
        self.feed(_at(event, self.now), run)

    def drain(self) -> RunState | None:
        """Deliver what is queued, in order, until nothing is (timers are not fired)."""
        while self.queue:
            self.deliver()
        return self.state

    def fire(self, timer_id: str) -> None:
        t = self.timers.pop(timer_id)
        self.now = max(self.now, t.fire_at)
        self.feed(TimerFired(timer_id, self.now), t.run_id)

    def run(self, input: dict[str, Any], *, run_id: str = "r1", limit: int = 20_000) -> RunState:
        self.root = run_id
        self.feed(Start(run_id, input, self.now))
        for _ in range(limit):
            if self.finished is not None and not self.queue:
                break
            # a delivery may be late, by up to MAX_DELAY_S: timers due by then may fire first
            soon = [t for t, timer in self.timers.items() if timer.fire_at <= self.now + MAX_DELAY_S]
            if self.queue and not (self.rng and soon and self.rng.random() < 0.15):
                i = self.rng.randrange(len(self.queue)) if self.rng else 0
                if self.rng and self.rng.random() < 0.2:
                    self.queue.append(self.queue[i])  # delivered again later: a duplicate
                self.deliver(i)
            elif self.timers:
                self.fire(min(soon or self.timers, key=lambda t: (self.timers[t].fire_at, t)))
            else:
                break
        assert self.state is not None
        return self.state


def _at(event: Event, now: float) -> Event:
    return type(event)(**{**event.__dict__, "at": now})
