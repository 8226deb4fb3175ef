"""`relay demo --saga` on the real stack, with the coordinator SIGKILLed every 1.5 s and the
participants once: every order saga ends where it should (completed, or compensated with one
refund and one release), no effect happens twice, the retries behind durable backoff timers
happen after the kills, and incident approvals sent before the run reached its gate are kept."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration
ORDERS, INCIDENTS = 1000, 8  # the acceptance scale: a run long enough for several coordinator kills


def test_saga_demo_through_coordinator_kills(stack, settings):
    out = subprocess.run([sys.executable, "-m", "relay", "demo", "--saga", "--orders", str(ORDERS), "--incidents",
                          str(INCIDENTS), "--kill-every", "1.5", "--json"], capture_output=True, text=True, timeout=420)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    s = json.loads(out.stdout)
    failing = ORDERS // 5
    assert s["orders_by_state"] == {"completed": ORDERS - failing, "compensated": failing}
    assert s["refunded_once"] == s["released_once"] == s["ship_retried_after_timer"] == failing
    assert s["effects"] == {"charge": ORDERS, "reserve": ORDERS, "ship": ORDERS - failing, "refund": failing,
                            "release": failing}
    assert s["early_approvals_kept"] == s["early_approvals"] == INCIDENTS // 2
    assert s["incidents_by_state"] == {"completed": 6, "failed": 2} and s["logs_retried_after_timer"] == INCIDENTS
    assert s["stuck"] == 0 and s["coordinator_kills"] >= 2 and s["participant_kills"] == 1
    for role in ("coordinator", "participants"):  # the workers the demo started are gone
        assert not (settings.stack_dir / "pids" / f"worker-saga-{role}.pid").exists()
