"""The saga demo's verdict: where every run ended, which effects happened (and how often), the
retries that waited for a durable timer, throughput and step latency, read from the database."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from relay.saga.state import TERMINAL

TERMINAL_STATES = [s.value for s in TERMINAL]
ORDER_OK = ["charge", "reserve", "ship"]
ORDER_UNDONE = ["charge", "reserve", "release", "refund"]  # the undo is last done, first undone


@dataclass
class SagaDemoSummary:
    run_id: str
    orders: int
    incidents: int
    writers: int
    kill_every_s: float
    pipeline_ready_s: float = 0.0
    start_s: float = 0.0
    orders_by_state: dict[str, int] = field(default_factory=dict)
    orders_expected: dict[str, int] = field(default_factory=dict)
    orders_wrong_state: int = 0
    orders_wrong_effects: int = 0
    effects: dict[str, int] = field(default_factory=dict)
    refunded_once: int = 0
    released_once: int = 0
    ship_retried_after_timer: int = 0
    incidents_by_state: dict[str, int] = field(default_factory=dict)
    incidents_wrong: int = 0
    early_approvals_kept: int = 0
    early_approvals: int = 0
    rollbacks_once: int = 0
    logs_retried_after_timer: int = 0
    stuck: int = 0
    coordinator_kills: int = 0
    participant_kills: int = 0
    sagas_per_s: float = 0.0
    all_ended_s: float = 0.0
    step_ms: dict[str, float] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)  # a few runs that went wrong, for `relay saga show`

    @property
    def ok(self) -> bool:
        failing = self.orders_expected.get("compensated", 0)
        return (self.orders > 0 and self.stuck == 0 and self.orders_wrong_state == 0 and self.orders_wrong_effects == 0
                and self.incidents_wrong == 0 and self.refunded_once == failing == self.released_once
                and self.ship_retried_after_timer == failing and self.early_approvals_kept == self.early_approvals
                and self.logs_retried_after_timer == self.incidents)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def render(self) -> str:
        exp, got = self.orders_expected, self.orders_by_state
        lat = self.step_ms
        chaos = (f"coordinator SIGKILLed {self.coordinator_kills} times (every {self.kill_every_s:g} s), "
                 f"participants {self.participant_kills}") if self.kill_every_s else "no kills (see --kill-every)"
        lines = [
            f"saga demo {self.run_id}: {self.orders} order sagas (charge -> reserve -> ship; "
            f"{exp.get('compensated', 0)} fail at shipping), {self.incidents} incident triages",
            f"  orders completed      {got.get('completed', 0):>6} / {exp.get('completed', 0)}",
            f"  orders compensated    {got.get('compensated', 0):>6} / {exp.get('compensated', 0)}   "
            f"(refunded once {self.refunded_once}, stock released once {self.released_once})",
            f"  wrong end / effects   {self.orders_wrong_state:>6} / {self.orders_wrong_effects}   "
            "(a run that ended elsewhere, or whose effects were not exactly its expected ones, once each)",
            "  effects               " + ", ".join(f"{k} {v}" for k, v in sorted(self.effects.items())),
            f"  timers                {self.ship_retried_after_timer:>6}   failing shipments retried after "
            f"their backoff timer; {self.logs_retried_after_timer} log scans likewise",
            "  incidents             " + ", ".join(f"{k} {v}" for k, v in sorted(self.incidents_by_state.items()))
            + f"; early approvals kept {self.early_approvals_kept}/{self.early_approvals}, "
              f"rollbacks once {self.rollbacks_once}, wrong {self.incidents_wrong}",
            f"  stuck (not ended)     {self.stuck:>6}",
            f"  chaos                 {chaos}",
            f"  throughput            {self.sagas_per_s:,.0f} order sagas/s ended ({self.orders} in "
            f"{self.all_ended_s:.1f} s from the first start)",
            f"  step latency          p50 {lat.get('p50', float('nan')):.0f} ms, p99 {lat.get('p99', float('nan')):.0f}"
            f" ms (command stored -> reply decided, {lat.get('n', 0):.0f} steps)",
            f"  pipeline ready after  {self.pipeline_ready_s:.1f} s (probe saga ended)",
        ]
        if self.examples:
            lines.append("  look at: " + ", ".join(f"relay saga show {r}" for r in self.examples[:3]))
        lines.append("RESULT: " + ("OK - every run ended where it should, every effect exactly once"
                                   if self.ok else "FAILED - see the counts above"))
        return "\n".join(lines)


def unfinished(conn: psycopg.Connection[Any], runs: list[str]) -> int:
    """How many of ``runs`` have not ended (or are not stored at all)."""
    row = conn.execute("SELECT count(*) FROM saga_runs WHERE run_id = ANY(%s) AND status = ANY(%s)",
                       (runs, TERMINAL_STATES)).fetchone()
    return len(runs) - (row[0] if row else 0)


def _states(conn: psycopg.Connection[Any], runs: list[str]) -> dict[str, dict[str, Any]]:
    return {r: s for r, s in conn.execute("SELECT run_id, state FROM saga_runs WHERE run_id = ANY(%s)",
                                          (runs,)).fetchall()}


def _effects(conn: psycopg.Connection[Any], runs: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for run, kind in conn.execute("SELECT run_id, kind FROM demo_saga_effects WHERE run_id = ANY(%s) ORDER BY n",
                                  (runs,)).fetchall():
        out.setdefault(run, []).append(kind)
    return out


def _attempts(state: dict[str, Any], step: str) -> int:
    return int(state.get("steps", {}).get(step, {}).get("attempt") or 0)


def step_latencies_ms(states: list[dict[str, Any]]) -> list[float]:
    """Per step success: ms from the step's last dispatch to the decision on its reply."""
    out = []
    for state in states:
        sent: dict[str, float] = {}
        for entry in state.get("timeline", []):
            outcome, step = str(entry.get("outcome")), entry.get("step")
            if outcome == "dispatched":
                sent[step] = float(entry["at"])
            elif outcome == "succeeded" and step in sent:
                out.append((float(entry["at"]) - sent[step]) * 1000)
    return out


def _orders(s: SagaDemoSummary, conn: psycopg.Connection[Any], runs: dict[str, bool]) -> None:
    states, effects = _states(conn, list(runs)), _effects(conn, list(runs))
    s.orders_expected = dict(Counter("compensated" if fail else "completed" for fail in runs.values()))
    s.orders_by_state = dict(Counter(str(st.get("status")) for st in states.values()))
    s.effects = dict(Counter(k for kinds in effects.values() for k in kinds))
    for run, fail in runs.items():
        st, kinds = states.get(run, {}), effects.get(run, [])
        if st.get("status") != ("compensated" if fail else "completed"):
            s.orders_wrong_state += 1
            s.examples.append(run)
        if kinds != (ORDER_UNDONE if fail else ORDER_OK):
            s.orders_wrong_effects += 1
            s.examples.append(run)
        if fail:
            s.refunded_once += kinds.count("refund") == 1
            s.released_once += kinds.count("release") == 1
            s.ship_retried_after_timer += _attempts(st, "ship") >= 2
    done = [st for run, st in states.items() if not runs[run] and st.get("status") == "completed"]
    lat = sorted(step_latencies_ms(done))
    if lat:
        s.step_ms = {"p50": statistics.median(lat), "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
                     "n": float(len(lat))}


def _incidents(s: SagaDemoSummary, conn: psycopg.Connection[Any], plans: dict[str, str]) -> None:
    from relay.examples.incident_triage import APPROVAL_STEP

    states, effects = _states(conn, list(plans)), _effects(conn, list(plans))
    s.incidents_by_state = dict(Counter(str(st.get("status")) for st in states.values()))
    s.early_approvals = sum(p == "early" for p in plans.values())
    for run, plan in plans.items():
        st, kinds = states.get(run, {}), effects.get(run, [])
        approved = plan != "deny"
        if st.get("status") != ("completed" if approved else "failed") or kinds != (["rollback"] if approved else []):
            s.incidents_wrong += 1
            s.examples.append(run)
        s.rollbacks_once += approved and kinds == ["rollback"]
        s.logs_retried_after_timer += _attempts(st, "logs_scan") >= 2
        if plan == "early":  # kept: approved by the decision sent with the start, without waiting
            s.early_approvals_kept += any(str(e.get("outcome")).startswith("approved by demo-oncall")
                                          and e.get("step") == APPROVAL_STEP for e in st.get("timeline", [])) \
                and st.get("status") == "completed"


def verdict(conn: psycopg.Connection[Any], s: SagaDemoSummary, runs: dict[str, bool], plans: dict[str, str],
            started_at: float) -> None:
    """Fill ``s`` in; ``started_at``: epoch seconds of the first order start."""
    everything = [*runs, *plans]
    s.stuck = unfinished(conn, everything)
    _orders(s, conn, runs)
    _incidents(s, conn, plans)
    row = conn.execute("SELECT extract(epoch FROM max(updated_at)) FROM saga_runs WHERE run_id = ANY(%s)",
                       (list(runs),)).fetchone()
    s.all_ended_s = max(float(row[0] or started_at) - started_at, 0.0) if row else 0.0
    s.sagas_per_s = len(runs) / s.all_ended_s if s.all_ended_s > 0 else 0.0
    s.examples = list(dict.fromkeys(s.examples))
