"""A long-running child process we own, tracked by a pid file (never found by name).

Contract:
- ``start`` launches the command detached (own session, output to a log file) and records
  ``pid`` + the process start time in the pid file; the start time guards against pid reuse, so
  ``pid()`` only ever names *our* process;
- ``stop`` signals only that pid (SIGTERM or the given signal, then SIGKILL after a grace period)
  and removes the pid file once it is gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence


def _proc_start_time(pid: int) -> int | None:
    """Kernel start time (clock ticks since boot) of ``pid``; None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name may contain spaces/parens: fields after the last ')' are fixed
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":  # zombie: exited, waiting to be reaped
        return None
    return int(fields[19])


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(data.splitlines()[-lines:])


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


@dataclass
class ManagedProcess:
    name: str
    pid_file: Path
    log_file: Path

    def pid(self) -> int | None:
        """Our process's pid if it is alive, else None (a stale pid file is removed)."""
        try:
            record = json.loads(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        pid, started = int(record["pid"]), record.get("start_time")
        actual = _proc_start_time(pid)
        if actual is None or (started is not None and actual != started):
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def adopt(self, pid: int) -> None:
        """Record ``pid`` (started by a tool that daemonises, e.g. pg_ctl) as ours."""
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(json.dumps({"pid": pid, "start_time": _proc_start_time(pid)}))

    def start(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
        user: str | None = None,
    ) -> int:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_file.open("ab")
        try:
            proc = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True,
                user=user, close_fds=True,
            )
        finally:
            log.close()
        self.adopt(proc.pid)
        # we never wait() on it from here: detach the Popen object so no zombie check interferes
        proc.returncode = 0
        return proc.pid

    def stop(self, *, sig: int = signal.SIGTERM, grace_s: float = 20.0) -> bool:
        """Stop our process; True if one was running."""
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if self.pid() is None:
                break
            _reap(pid)
            time.sleep(0.1)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            for _ in range(50):
                _reap(pid)
                if self.pid() is None:
                    break
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our direct child (it is when started in-process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
