"""How saga events and commands travel: outbox events on ``outbox.event.saga.<workflow>`` by run id.

Everything addressed to a run (its start, participants' replies, approvals, cancel, retry, timer
firings, a child run's end, a parent's request to undo a completed child) is an outbox event of
aggregatetype ``saga.<workflow>`` with the run id as aggregateid, so it lands on the run's
partition and one coordinator sees it in order.
Commands name that aggregatetype as ``reply_to``.
Commands to participants are outbox events too, of the step's topic as aggregatetype, with an
event id derived from the command id: a command sent again (after a crash) has the same id, and
the participant's inbox drops it.

Decoding is strict: a payload that does not fit raises :class:`relay.errors.DecodeError` naming
the field, the value and what was expected (the consumer dead-letters it with that reason).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from relay.errors import DecodeError
from relay.outbox.writer import OutboxEvent
from relay.saga.state import (
    Approval,
    Cancel,
    ChildDone,
    CompensateChild,
    CompensateRequest,
    Dispatch,
    Event,
    Finished,
    Reply,
    RequestApproval,
    RetryRun,
    RunStatus,
    Start,
    StartChild,
    TimerFired,
)

SAGA_PREFIX = "saga."  # a workflow's runs: aggregatetype saga.<workflow>, topic outbox.event.saga.<workflow>
NAMESPACE = uuid.UUID("6f1c2a4e-8d1b-4c55-9a57-0d3c2b7e9f10")  # run ids and command event ids (uuid5)


class SagaEvent(StrEnum):
    START = "SagaStart"
    REPLY = "SagaReply"
    APPROVAL = "SagaApproval"
    CANCEL = "SagaCancel"
    RETRY = "SagaRetry"
    TIMER = "SagaTimer"
    CHILD_DONE = "SagaChildDone"
    COMPENSATE = "SagaCompensate"  # to a child run: its parent undoes the step that ran it


class SagaCommand(StrEnum):
    COMMAND = "SagaCommand"
    COMPENSATION = "SagaCompensation"
    APPROVAL_REQUESTED = "SagaApprovalRequested"  # on outbox.event.saga-approvals, for people and tools
    FINISHED = "SagaFinished"                      # on outbox.event.saga-finished


class SagaHeader(StrEnum):
    SAGA_ID = "saga-id"
    CAUSATION_ID = "causation-id"      # the event that caused this one
    CORRELATION_ID = "correlation-id"  # the run's business key, or its id
    TRACEPARENT = "traceparent"


APPROVALS_AGGREGATE = "saga-approvals"
FINISHED_AGGREGATE = "saga-finished"


def saga_aggregate(workflow: str) -> str:
    """The aggregatetype of everything addressed to the runs of ``workflow`` (key: run id)."""
    return SAGA_PREFIX + workflow


@dataclass(frozen=True)
class Envelope:
    """What every event a run sends carries besides its payload."""

    workflow: str                    # the sending run's workflow: replies come back to its topic
    correlation_id: str              # the run's business key, or its id
    causation_id: str                # the event that caused this one
    traceparent: str | None = None
    parent_workflow: str | None = None


def run_id_for(workflow: str, idempotency_key: str) -> str:
    """The run id a start with this key gets: the same key, the same run."""
    return str(uuid.uuid5(NAMESPACE, f"run\0{workflow}\0{idempotency_key}"))


def command_event_id(command_id: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"command\0{command_id}")


def parent_of(run_id: str) -> tuple[str, str] | None:
    """(parent run id, step) of a child run (ids ``<parent>/<step>/<attempt>``), else None."""
    parts = run_id.rsplit("/", 2)
    return (parts[0], parts[1]) if len(parts) == 3 else None


# -- decoding what arrives on outbox.event.saga ----------------------------------------------

def decode(event_type: str, payload: Any, at: float, run_id: str) -> Event:
    """The engine event of one record of the saga topic."""
    try:
        kind = SagaEvent(event_type)
    except ValueError:
        raise _bad("type", event_type, f"one of {[e.value for e in SagaEvent]}") from None
    if not isinstance(payload, Mapping):
        raise _bad("payload", payload, f"a JSON object for {kind.value}")
    p = _Fields(kind, payload)
    match kind:
        case SagaEvent.START:
            return Start(run_id, p.mapping("input"), at, business_key=p.opt_text("business_key"),
                         parent_workflow=p.opt_text("parent_workflow"), initiator=p.opt_text("initiator"))
        case SagaEvent.REPLY:
            return Reply(p.text("command_id"), p.flag("ok"), at, output=payload.get("output"),
                         error=p.opt_text("error"), retriable=p.flag("retriable", True),
                         uncertain=p.flag("uncertain", False))
        case SagaEvent.APPROVAL:
            return Approval(p.text("step"), p.flag("approved"), at, by=p.opt_text("by") or "",
                            reason=p.opt_text("reason") or "", payload_hash=p.opt_text("payload_hash"))
        case SagaEvent.CANCEL:
            return Cancel(at, reason=p.opt_text("reason") or "cancelled by an operator")
        case SagaEvent.RETRY:
            return RetryRun(at)
        case SagaEvent.TIMER:
            return TimerFired(p.text("timer_id"), at)
        case SagaEvent.CHILD_DONE:
            status = p.text("status")
            if status not in RunStatus.__members__.values():
                raise _bad("payload.status", status, f"one of {[s.value for s in RunStatus]}")
            return ChildDone(p.text("child_run_id"), RunStatus(status), at, output=payload.get("output"),
                             reason=p.opt_text("reason"), request=p.opt_text("request"))
        case SagaEvent.COMPENSATE:
            return CompensateRequest(p.text("request_id"), p.count("attempt"), at, p.text("parent_run_id"),
                                     p.text("parent_step"))
    raise AssertionError(kind)  # pragma: no cover - every SagaEvent is matched above


class _Fields:
    def __init__(self, kind: SagaEvent, payload: Mapping[str, Any]) -> None:
        self.kind, self.payload = kind, payload

    def text(self, name: str) -> str:
        v = self.payload.get(name)
        if not isinstance(v, str) or not v:
            raise _bad(f"payload.{name}", v, f"a non-empty string in {self.kind.value}")
        return v

    def opt_text(self, name: str) -> str | None:
        v = self.payload.get(name)
        if v is not None and not isinstance(v, str):
            raise _bad(f"payload.{name}", v, f"a string or null in {self.kind.value}")
        return v

    def flag(self, name: str, default: bool | None = None) -> bool:
        v = self.payload.get(name, default)
        if not isinstance(v, bool):
            raise _bad(f"payload.{name}", v, f"true or false in {self.kind.value}")
        return v

    def count(self, name: str) -> int:
        v = self.payload.get(name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise _bad(f"payload.{name}", v, f"an integer >= 1 in {self.kind.value}")
        return v

    def mapping(self, name: str) -> dict[str, Any]:
        v = self.payload.get(name, {})
        if not isinstance(v, Mapping):
            raise _bad(f"payload.{name}", v, f"a JSON object in {self.kind.value}")
        return dict(v)


def _bad(field: str, value: Any, expected: str) -> DecodeError:
    shown = repr(value)
    return DecodeError(f"saga event: field {field!r} = {shown[:120]}; expected {expected}")


# -- encoding what the coordinator sends ------------------------------------------------------

def encode(command: Any, env: Envelope) -> list[OutboxEvent]:
    """The outbox events of one engine command (timers are not events: the coordinator keeps them)."""
    match command:
        case Dispatch():
            run = command.run_id
            kind = SagaCommand.COMPENSATION if command.compensation else SagaCommand.COMMAND
            payload = {"command_id": command.command_id, "run_id": run, "step": command.step,
                       "attempt": command.attempt, "idempotency_key": command.idempotency_key,
                       "input": command.input, "reply_to": saga_aggregate(env.workflow)}
            if command.on_stale is not None:  # optimistic concurrency: the version it expects
                payload.update(expected_version=command.expected_version, on_stale=command.on_stale)
            return [OutboxEvent(command.topic, run, kind.value, payload, _headers(run, env),
                                command_event_id(command.command_id))]
        case RequestApproval():
            payload = {"run_id": command.run_id, "workflow": env.workflow, "step": command.step,
                       "input": command.input, "expires_at": command.expires_at}
            request_id = f"{command.run_id}/{command.step}/approval"
            if command.gate is not None:  # the policy gate's: what to approve (hash), under which rule, by whom
                payload["gate"] = command.gate
                request_id = str(command.gate["request_id"])
            return [OutboxEvent(APPROVALS_AGGREGATE, command.run_id, SagaCommand.APPROVAL_REQUESTED.value, payload,
                                _headers(command.run_id, env), command_event_id(request_id))]
        case StartChild():
            payload = {"input": command.input, "workflow": command.workflow, "parent_workflow": env.workflow}
            if command.initiator is not None:
                payload["initiator"] = command.initiator
            return [OutboxEvent(saga_aggregate(command.workflow), command.child_run_id, SagaEvent.START.value,
                                payload, _headers(command.child_run_id, env),
                                command_event_id(f"{command.child_run_id}/start"))]
        case CompensateChild():
            child = command.child_run_id
            payload = {"request_id": command.command_id, "attempt": command.attempt,
                       "parent_run_id": command.parent_run_id, "parent_step": command.parent_step,
                       "parent_workflow": env.workflow}
            return [OutboxEvent(saga_aggregate(command.workflow), child, SagaEvent.COMPENSATE.value, payload,
                                _headers(child, env), command_event_id(command.command_id))]
        case Finished():
            return _finished(command, env)
    return []


def _finished(command: Finished, env: Envelope) -> list[OutboxEvent]:
    run = command.run_id
    headers = _headers(run, env)
    payload = {"run_id": run, "workflow": env.workflow, "status": command.status.value, "output": command.output,
               "reason": command.reason}
    # random ids: a retried run may end twice with one status, and nothing dedups these by id;
    # an end told again to the parent (``again``) is not a new end: only the parent hears it
    out = [] if command.again else [OutboxEvent(FINISHED_AGGREGATE, run, SagaCommand.FINISHED.value, payload,
                                                headers)]
    parent = parent_of(run)
    if parent is not None and env.parent_workflow:
        done = {"child_run_id": run, "status": command.status.value, "output": command.output,
                "reason": command.reason, "request": command.answers}
        out.append(OutboxEvent(saga_aggregate(env.parent_workflow), parent[0], SagaEvent.CHILD_DONE.value, done,
                               headers))
    return out


def reply(command: Mapping[str, Any], *, ok: bool, output: Any = None, error: str | None = None,
          retriable: bool = True, traceparent: str | None = None, uncertain: bool = False) -> OutboxEvent:
    """A participant's answer to a command payload (written through its ``tx.outbox``, in the
    transaction of its business change). A duplicate reply is harmless: the run ignores it."""
    run, cid = str(command["run_id"]), str(command["command_id"])
    payload = {"command_id": cid, "ok": ok, "output": output, "error": error, "retriable": retriable}
    if uncertain:  # the effect may have happened: compensated if the run fails
        payload["uncertain"] = True
    env = Envelope("", correlation_id=run, causation_id=cid, traceparent=traceparent)
    return OutboxEvent(str(command["reply_to"]), run, SagaEvent.REPLY.value, payload, _headers(run, env))


def workflow_of(payload: Any) -> str:
    """The workflow a SagaStart names (the coordinator picks the definition by it)."""
    wf = payload.get("workflow") if isinstance(payload, Mapping) else None
    if not isinstance(wf, str) or not wf:
        raise _bad("payload.workflow", wf, "the id of a workflow this coordinator runs")
    return wf


def _headers(run_id: str, env: Envelope) -> dict[str, str]:
    h = {SagaHeader.SAGA_ID.value: run_id, SagaHeader.CORRELATION_ID.value: env.correlation_id,
         SagaHeader.CAUSATION_ID.value: env.causation_id}
    if env.traceparent:
        h[SagaHeader.TRACEPARENT.value] = env.traceparent
    return h
