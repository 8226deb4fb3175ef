"""Saga coordinators: workflows of steps (a DAG), retries, approvals, LIFO compensation.

- definitions: :func:`load_workflow` (YAML) / :func:`build_workflow` (a mapping) give a validated
  :class:`Workflow` pinned by its content :attr:`Workflow.hash`;
- the engine: :func:`decide` ``(workflow, state, event) -> (state, commands)``, pure and
  deterministic; the coordinator stores the state, then sends the commands;
- the policy gate: :class:`Gate` (a policy and the environment), applied by the engine before
  every command (docs/policy.md).
"""

from relay.saga.engine import decide
from relay.saga.gate import Gate
from relay.saga.load import build_workflow, load_workflow
from relay.saga.model import Step, StepType, Workflow
from relay.saga.state import (
    Approval,
    Cancel,
    ChildDone,
    CompensateChild,
    CompensateRequest,
    Dispatch,
    Finished,
    Reply,
    RequestApproval,
    RetryRun,
    RunState,
    RunStatus,
    SetTimer,
    Start,
    StartChild,
    StepStatus,
    TimerFired,
)

__all__ = [
    "decide", "Gate", "build_workflow", "load_workflow", "Workflow", "Step", "StepType",
    "RunState", "RunStatus", "StepStatus",
    "Start", "Reply", "TimerFired", "Approval", "Cancel", "RetryRun", "ChildDone",
    "CompensateRequest", "Dispatch", "SetTimer", "RequestApproval", "StartChild", "CompensateChild", "Finished",
]
