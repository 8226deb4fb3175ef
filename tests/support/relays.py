"""The relays under test, as processes we can start, hard-kill and restart.

The polling relay works on its own database (``relay_poller``, same server), which no connector
reads, so the two relays never publish each other's rows.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass, field

import psycopg

from relay.connect import ConnectClient
from relay.outbox import migrate
from relay.outbox.slot import slot_info
from relay.stack.process import ManagedProcess

POLLER_DB = "relay_poller"


@dataclass
class CdcRelay:
    """Debezium in Kafka Connect. kill = SIGKILL the Connect JVM; restart = start it again."""

    stack: object
    settings: object
    name: str = "cdc"
    kills: int = 0

    @property
    def dsn(self) -> str:
        return self.settings.dsn

    def start(self) -> None:
        self.stack.up()
        ConnectClient(self.settings.connect_rest_url).wait_running(self.settings.connector_name, 120)
        # Connect's status topic can still say RUNNING for the dead worker's task: the truth is
        # whether Debezium is streaming from the slot again
        deadline = time.monotonic() + 120
        with psycopg.connect(self.settings.dsn, autocommit=True) as conn:
            while not slot_info(conn, self.settings.slot_name).active:
                assert time.monotonic() < deadline, "Debezium did not resume streaming within 120 s"
                time.sleep(0.2)

    def kill(self) -> None:
        pid = self.stack.connect.process.pid()
        assert pid, "Connect is not running"
        os.kill(pid, signal.SIGKILL)
        while self.stack.connect.process.pid() is not None:
            time.sleep(0.05)
        self.kills += 1

    def stop(self) -> None:
        self.start()  # the CDC relay is part of the shared stack: leave it running


@dataclass
class PollerRelay:
    """`relay outbox poll` processes on their own database. kill = SIGKILL one by its pid."""

    settings: object
    count: int = 1
    name: str = "poller"
    kills: int = 0
    procs: list = field(default_factory=list)
    extra_env: dict = field(default_factory=dict)

    @property
    def dsn(self) -> str:
        s = self.settings
        return f"postgresql://{s.pg_user}:{s.pg_password.get_secret_value()}@{s.host}:{s.pg_port}/{POLLER_DB}"

    def _env(self) -> dict:
        return {**os.environ, "RELAY_PG_DSN": self.dsn, "RELAY_POLLER_METRICS_PORT": "0",
                "RELAY_POLLER_INTERVAL_S": "0.2", "RELAY_POLLER_BATCH_SIZE": "200", **self.extra_env}

    def start(self) -> None:
        logs = self.settings.stack_dir / "logs"
        while len([p for p in self.procs if p.pid()]) < self.count:
            n = len(self.procs)
            proc = ManagedProcess(f"test-poller-{os.getpid()}-{n}",
                                  self.settings.stack_dir / "pids" / f"test-poller-{os.getpid()}-{n}.pid",
                                  logs / f"test-poller-{n}.log")
            proc.start([sys.executable, "-m", "relay", "outbox", "poll"], env=self._env())
            self.procs.append(proc)

    def kill(self) -> None:
        alive = [p for p in self.procs if p.pid()]
        assert alive, "no poller is running"
        victim = alive[self.kills % len(alive)]
        pid = victim.pid()
        os.kill(pid, signal.SIGKILL)
        while victim.pid() is not None:
            time.sleep(0.05)
        self.kills += 1

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()
        self.procs.clear()


def poller_relay(stack, settings, count: int = 1, **env: str) -> PollerRelay:
    """A PollerRelay on a migrated ``relay_poller`` database (created on first use)."""
    stack.postgres.ensure_database(POLLER_DB)
    relay = PollerRelay(settings, count=count, extra_env=dict(env))
    with psycopg.connect(relay.dsn) as conn:
        migrate(conn, max_event_bytes=settings.max_event_bytes)
    return relay
