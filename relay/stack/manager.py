"""The native dev stack as one unit: ``up`` (idempotent), ``down`` (by pid file), ``status``.

``up`` starts Postgres and Kafka side by side, then Connect (it needs the broker), waits until
each *serves clients* (Postgres accepts connections, the broker answers metadata, Connect lists
the Debezium plugin) and fails with the log tail of the part that did not come up. Parts already
ready are left alone, so a second ``up`` is a no-op.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from typing import Callable

from relay.config import Settings
from relay.errors import StackError
from relay.stack.connect import ConnectPart
from relay.stack.jars import ensure_jars
from relay.stack.kafka import KafkaPart
from relay.stack.part import Part, PartStatus
from relay.stack.postgres import PostgresPart
from relay.stack.process import ManagedProcess

# callback(part name, event, seconds since up() began); events: fetching, fetched, starting,
# already-running, ready
Progress = Callable[[str, str, float], None]


def _quiet(_part: str, _event: str, _t: float) -> None:
    pass


@dataclass
class Stack:
    settings: Settings
    parts: list[Part] = field(init=False)

    def __post_init__(self) -> None:
        self.postgres = PostgresPart(self.settings)
        self.kafka = KafkaPart(self.settings)
        self.connect = ConnectPart(self.settings)
        self.parts = [self.postgres, self.kafka, self.connect]

    def up(self, progress: Progress = _quiet) -> dict[str, float]:
        """Bring every part to ready; returns seconds each took (0 for already running)."""
        t0 = time.monotonic()
        elapsed = lambda: time.monotonic() - t0  # noqa: E731
        progress("jars", "fetching", elapsed())
        fetched = ensure_jars(self.settings)
        progress("jars", "fetched" if fetched else "cached", elapsed())
        timings: dict[str, float] = {}
        if not any(part.process.pid() for part in self.parts):  # the profile its data was made with
            has_data = (self.postgres.data_dir / "PG_VERSION").exists() or (
                self.kafka.data_dir / "meta.properties").exists()
            self.kafka.secure.check_profile(has_data)
        # Postgres and Kafka do not depend on each other; Connect needs the broker.
        for wave in ([self.postgres, self.kafka], [self.connect]):
            started = {}
            for part in wave:
                if part.ready():
                    progress(part.name, "already-running", elapsed())
                    timings[part.name] = 0.0
                    part.after_ready()
                    continue
                if part.process.pid() is not None:
                    # alive but not answering: a previous start still booting, or wedged
                    progress(part.name, "waiting", elapsed())
                else:
                    busy = part.busy_ports()
                    if busy:
                        raise StackError(part.name, f"port(s) {busy} on {self.settings.host} are in use by a "
                                         "process that is not this stack's (another stack from a different "
                                         "checkout?); stop it or choose other ports (RELAY_*_PORT)")
                    progress(part.name, "starting", elapsed())
                    part.start()
                started[part] = time.monotonic()
            for part, since in started.items():
                self._wait_ready(part)
                part.after_ready()
                timings[part.name] = time.monotonic() - since
                progress(part.name, "ready", elapsed())
        return timings

    def _wait_ready(self, part: Part) -> None:
        deadline = time.monotonic() + self.settings.up_timeout_s
        while time.monotonic() < deadline:
            if part.process.pid() is None:
                raise StackError(part.name, "the process exited during start-up", part.log_tail())
            if part.ready():
                return
            time.sleep(0.25)
        raise StackError(part.name, f"not ready after {self.settings.up_timeout_s:.0f} s", part.log_tail())

    def down(self, progress: Progress = _quiet) -> list[str]:
        """Stop every process we started (workers, then Connect, Kafka, Postgres), by pid file.

        Returns the names that were running.
        """
        t0 = time.monotonic()
        stopped = []
        for worker in self.workers():
            if worker.stop():
                stopped.append(worker.name)
                progress(worker.name, "stopped", time.monotonic() - t0)
        for part in reversed(self.parts):
            if part.stop():
                stopped.append(part.name)
                progress(part.name, "stopped", time.monotonic() - t0)
        return stopped

    def clean(self) -> list[str]:
        """Delete the stack's data (refused while any part runs); returns the removed folders."""
        running = [name for name, st in self.status().items() if st.pid is not None]
        if running:
            raise StackError(",".join(running), "still running: `relay stack down` first")
        removed = []
        for folder in {self.postgres.home, self.settings.stack_dir}:
            if folder.exists():
                shutil.rmtree(folder)
                removed.append(str(folder))
        return removed

    def workers(self) -> list[ManagedProcess]:
        """Workers started by `relay demo` (or tests) that record a pid file in the stack."""
        pids = self.settings.stack_dir / "pids"
        own = {part.process.pid_file for part in self.parts}
        return [
            ManagedProcess(f.stem, f, self.settings.stack_dir / "logs" / f"{f.stem}.log")
            for f in sorted(pids.glob("*.pid")) if f not in own
        ]

    def status(self) -> dict[str, PartStatus]:
        return {part.name: part.status() for part in self.parts}

    def is_ready(self) -> bool:
        return all(s.state == "ready" for s in self.status().values())
