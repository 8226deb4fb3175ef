"""CPU seconds per process over a benchmark window, from /proc (Linux).

A "process" here is a pid and its live descendants (Postgres is a postmaster plus one backend
per connection; the backends' time is what the commits cost). Time of descendants that exited
during the window is counted through the parent's cutime/cstime once they are reaped.
``Meter.take()`` snapshots, ``Meter.since(snapshot)`` gives {name: cpu seconds}.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from relay.config import Settings

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, own + reaped children's CPU seconds) or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return int(fields[1]), (utime + stime + cutime + cstime) / TICKS


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (every thread), 0.0 once it is gone."""
    got = _stat(pid)
    return got[1] if got is not None else 0.0


def tree_seconds(root: int) -> float:
    """CPU seconds of ``root`` and every live descendant."""
    parents: dict[int, int] = {}
    own: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            got = _stat(int(entry.name))
            if got is not None:
                parents[int(entry.name)], own[int(entry.name)] = got
    total, todo = 0.0, [root]
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    while todo:
        pid = todo.pop()
        total += own.get(pid, 0.0)
        todo.extend(children.get(pid, []))
    return total


def stack_pids(settings: Settings) -> dict[str, int]:
    """The native stack's processes by part name (from their pid files)."""
    from relay.stack.process import ManagedProcess

    out = {}
    for name in ("postgres", "kafka", "connect"):
        proc = ManagedProcess(name, settings.stack_dir / "pids" / f"{name}.pid", settings.stack_dir / "logs" / "x")
        pid = proc.pid()
        if pid is not None:
            out[name] = pid
    return out


class Meter:
    """CPU seconds of named process trees (the stack's parts plus any added pids)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = dict(pids)

    def add(self, name: str, pid: int) -> None:
        self.pids[name] = pid

    def take(self) -> dict[str, float]:
        snap = {name: tree_seconds(pid) for name, pid in self.pids.items()}
        snap["_wall"] = time.monotonic()
        snap["_self"] = time.process_time()
        return snap

    def since(self, before: dict[str, float]) -> dict[str, float]:
        """{name: CPU seconds since ``before``} plus ``bench`` (this process) and ``wall``."""
        now = self.take()
        out = {name: round(now[name] - before.get(name, 0.0), 3) for name in self.pids}
        out["bench"] = round(now["_self"] - before["_self"], 3)
        out["wall"] = round(now["_wall"] - before["_wall"], 3)
        return out
