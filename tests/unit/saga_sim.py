"""An in-memory driver for the pure saga engine: participants, timers, approvals, no I/O."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from relay.saga import decide
from relay.saga.model import Workflow
from relay.saga.state import (
    Approval,
    Dispatch,
    Event,
    Finished,
    Reply,
    RequestApproval,
    RunState,
    SetTimer,
    Start,
    StartChild,
    TimerFired,
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
    state: RunState | None = None
    now: float = 0.0
    queue: list[Event] = field(default_factory=list)
    timers: dict[str, float] = field(default_factory=dict)
    sent: dict[str, Dispatch] = field(default_factory=dict)
    dispatches: list[Dispatch] = field(default_factory=list)
    effects: dict[str, int] = field(default_factory=dict)   # idempotency key -> times applied (deduped: 0/1)
    approval_requests: list[str] = field(default_factory=list)
    children: list[StartChild] = field(default_factory=list)
    finished: Finished | None = None

    def feed(self, event: Event) -> None:
        self.state, commands = decide(self.wf, self.state, event)
        for c in commands:
            self._handle(c)

    def _handle(self, c: Any) -> None:
        if isinstance(c, Dispatch):
            if c.command_id in self.sent:
                assert self.sent[c.command_id] == c, f"{c.command_id} sent twice with different content"
            self.sent[c.command_id] = c
            self.dispatches.append(c)
            outcome = self.behaviour(c)
            if outcome[0] == "ok":
                self.effects[c.idempotency_key] = 1  # the participant dedups by the key
                self.queue.append(Reply(c.command_id, True, self.now, output=outcome[1]))
            elif outcome[0] == "fail":
                self.queue.append(Reply(c.command_id, False, self.now, error=outcome[1], retriable=outcome[2]))
        elif isinstance(c, SetTimer):
            self.timers[c.timer_id] = c.fire_at
        elif isinstance(c, RequestApproval):
            self.approval_requests.append(c.step)
            if c.step in self.approvals:
                self.queue.append(Approval(c.step, self.approvals[c.step], self.now, by="tester"))
        elif isinstance(c, StartChild):
            self.children.append(c)
        elif isinstance(c, Finished):
            self.finished = c

    def run(self, input: dict[str, Any], *, run_id: str = "r1", limit: int = 20_000) -> RunState:
        self.feed(Start(run_id, input, self.now))
        for _ in range(limit):
            if self.finished is not None and not self.queue:
                break
            # a delivery may be late, by up to MAX_DELAY_S: timers due by then may fire first
            soon = [t for t, at in self.timers.items() if at <= self.now + MAX_DELAY_S]
            if self.queue and not (self.rng and soon and self.rng.random() < 0.15):
                i = self.rng.randrange(len(self.queue)) if self.rng else 0
                event = self.queue.pop(i)
                if self.rng and self.rng.random() < 0.2:
                    self.queue.append(event)  # delivered again later: a duplicate
                self.feed(_at(event, self.now))
            elif self.timers:
                tid = min(soon or self.timers, key=lambda t: (self.timers[t], t))
                self.now = max(self.now, self.timers.pop(tid))
                self.feed(TimerFired(tid, self.now))
            else:
                break
        assert self.state is not None
        return self.state


def _at(event: Event, now: float) -> Event:
    return type(event)(**{**event.__dict__, "at": now})
