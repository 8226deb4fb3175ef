"""The rollback evidence record of a compensated run (issue 17, the compensation article's
record), read off the run's timeline without I/O:

    {"run_id": ..., "status": "compensated", "failed_step": "ship", "reason": ...,
     "matched_policy_id": null, "rollback_triggered": true, "rollback_mode": "lifo_stack",
     "compensation_jobs_dispatched": 2, "compensation_jobs_skipped": 1,
     "compensation_order": ["reserve", "charge"], "rollback_finished_at": "2026-...Z"}

``compensation_jobs_dispatched`` counts steps whose compensation was sent (once each, whatever
the retries); ``matched_policy_id`` is the policy gate's rule that let the first compensation
through (None without a gate).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from relay.saga.state import RunState, RunStatus

ROLLBACK_MODE = "lifo_stack"  # completed steps undone last-first, one at a time
ENDED = (RunStatus.COMPENSATED, RunStatus.COMPENSATION_FAILED, RunStatus.CANCELLED)


def rollback_record(state: RunState) -> dict[str, Any] | None:
    """The record of ``state``'s rollback; None when it had none (yet)."""
    timeline = state.timeline
    started = next((e for e in timeline if e.get("outcome") in ("compensation started", "cancelled")), None)
    if started is None:
        return None
    dispatched = list(dict.fromkeys(str(e.get("step")) for e in timeline
                                    if e.get("outcome") == "compensation dispatched"))
    skipped = {str(e.get("step")) for e in timeline if e.get("outcome") == "compensation skipped"}
    failed_step = next((str(e["step"]) for e in timeline
                        if e.get("outcome") in ("failed", "timed_out", "denied") and e.get("step")), None)
    matched_policy_id = next((e.get("rule") for e in timeline
                              if e.get("outcome") == "compensation dispatched" and e.get("rule")), None)
    ended = state.status in ENDED
    return {
        "run_id": state.run_id, "workflow": state.workflow, "status": state.status.value, "failed_step": failed_step,
        "reason": state.reason, "matched_policy_id": matched_policy_id, "rollback_triggered": True,
        "rollback_mode": ROLLBACK_MODE, "compensation_jobs_dispatched": len(dispatched),
        "compensation_jobs_skipped": len(skipped), "compensation_order": dispatched,
        "rollback_started_at": _iso(float(started["at"])),
        "rollback_finished_at": _iso(state.updated_at) if ended else None,
    }


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
