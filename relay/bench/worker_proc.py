"""A benchmark worker: ``relay worker relay.bench.noop_app:make_consumer`` as our child process, with
its own metrics port and data dir, polled through /metrics, stopped by pid (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from relay.stack.process import rss_bytes

APP = "relay.bench.noop_app:make_consumer"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def handled(port: int, topic: str) -> int | None:
    """``relay_events_handled_total`` of ``topic`` on the worker at ``port``; None if not serving."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    match = re.search(r'^relay_events_handled_total\{topic="%s"\} (\S+)$' % re.escape(topic), text, re.M)
    return int(float(match.group(1))) if match else 0


class WorkerProcess:
    def __init__(self, topic: str, store: str, workdir: Path, name: str = "", env: dict | None = None,
                 args: tuple[str, ...] = (), app: str = APP, engine: str | None = None) -> None:
        """``store`` "kafka": the kafka engine (tables in memory); ``engine`` None: the worker's
        default (RELAY_CONSUMER_ENGINE)."""
        self.topic, self.store, self.args, self.app = topic, store, args, app
        self.engine = "kafka" if store == "kafka" else engine
        self.name = name or store
        self.port = free_port()
        self.log = workdir / f"worker-{self.name}.log"
        self.env = {**os.environ, "BENCH_TOPIC": topic, "BENCH_STORE": store,
                    "RELAY_WORKER_METRICS_PORT": str(self.port),
                    "RELAY_WORKER_DATA_DIR": str(workdir / f"data-{self.name}"), **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.started = 0.0

    def start(self) -> "WorkerProcess":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        with self.log.open("wb") as out:
            store = "memory" if self.store == "kafka" else self.store
            engine = ("--engine", self.engine) if self.engine else ()
            self.proc = subprocess.Popen([sys.executable, "-m", "relay", "worker", self.app, "--store", store,
                                          *engine, *self.args],
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def check(self) -> None:
        """Raise if the worker exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"worker {self.name} exited with {self.proc.returncode}:\n"
                               f"{self.log.read_text(errors='replace')[-3000:]}")

    def handled(self) -> int:
        return handled(self.port, self.topic) or 0

    def rss(self) -> int:
        return rss_bytes(self.pid) or 0

    def stop(self, grace_s: float = 30) -> float:
        """SIGTERM by pid, SIGKILL after ``grace_s``; returns the seconds it took."""
        t0 = time.monotonic()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                print(f"worker pid {proc.pid} ignored SIGTERM for {grace_s} s: SIGKILL", file=sys.stderr)
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        return time.monotonic() - t0

    def log_errors(self) -> list[str]:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return [ln for ln in lines if "ERROR" in ln or "Traceback" in ln]
