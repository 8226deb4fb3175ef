"""What every part of the native stack (Postgres, Kafka, Connect) offers the stack manager."""

from __future__ import annotations

import abc
import socket
from dataclasses import dataclass
from pathlib import Path

from relay.config import Settings
from relay.stack.process import ManagedProcess, log_tail, rss_bytes
from relay.stack.secure import SecureProfile


@dataclass(frozen=True)
class PartStatus:
    name: str
    state: str  # "ready" | "starting" | "stopped"
    pid: int | None
    address: str
    rss_bytes: int | None
    log: str

    def as_dict(self) -> dict:
        return {
            "state": self.state, "pid": self.pid, "address": self.address,
            "rss_bytes": self.rss_bytes, "log": self.log,
        }


class Part(abc.ABC):
    """One server process. ``start`` must return quickly; readiness is polled with ``ready``."""

    name: str

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.secure = SecureProfile(settings)  # the sasl_ssl profile, when RELAY_STACK_SECURITY asks for it
        self.dir = settings.stack_dir / self.name
        self.process = ManagedProcess(
            self.name,
            pid_file=settings.stack_dir / "pids" / f"{self.name}.pid",
            log_file=settings.stack_dir / "logs" / f"{self.name}.log",
        )

    @property
    @abc.abstractmethod
    def address(self) -> str:
        """How clients reach this part (DSN, bootstrap servers, URL)."""

    @property
    @abc.abstractmethod
    def ports(self) -> list[int]:
        """Loopback ports this part listens on (checked free before it starts)."""

    def busy_ports(self) -> list[int]:
        busy = []
        for port in self.ports:
            with socket.socket() as sock:
                sock.settimeout(0.5)
                if sock.connect_ex((self.settings.host, port)) == 0:
                    busy.append(port)
        return busy

    @abc.abstractmethod
    def start(self) -> None:
        """Prepare on first use (initdb, format, configs) and launch the process."""

    @abc.abstractmethod
    def ready(self) -> bool:
        """True when the part really serves clients (not merely when its process exists)."""

    def after_ready(self) -> None:  # noqa: B027 (an optional hook: most parts need nothing)
        """One-time work once the part serves clients (idempotent)."""

    def stop(self) -> bool:
        return self.process.stop()

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.process.log_file, lines)

    def status(self) -> PartStatus:
        pid = self.process.pid()
        if pid is None:
            state = "stopped"
        else:
            state = "ready" if self._safe_ready() else "starting"
        return PartStatus(self.name, state, pid, self.address,
                          rss_bytes(pid) if pid else None, str(self.process.log_file))

    def _safe_ready(self) -> bool:
        try:
            return self.ready()
        except Exception:  # noqa: BLE001 - readiness probes report, they never raise
            return False


def java_argv(heap: str, log4j: Path, classpath: Path, main: str, *args: str, jvm: tuple[str, ...] = ()) -> list[str]:
    return [
        "java", f"-Xmx{heap}", "-Xms64m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}", *jvm,
        "-cp", f"{classpath}/*", main, *args,
    ]


LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
logger.reflections.name = org.reflections
logger.reflections.level = ERROR
"""
