"""Worker processes and a record feed for the fault tests: `relay worker` started, SIGKILLed and
restarted by pid, and an independent producer (plain confluent-kafka) that writes numbered
events per key at a bounded rate while that happens."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from confluent_kafka import Producer

from relay.stack.process import ManagedProcess
from relay.topics import producer_config


@dataclass
class Workers:
    """``count`` worker processes of one app (one consumer group) on the test stack."""

    settings: object
    app: str
    name: str
    env: dict = field(default_factory=dict)
    args: tuple = ()
    procs: dict[int, ManagedProcess] = field(default_factory=dict)

    def _proc(self, n: int) -> ManagedProcess:
        s = self.settings
        return ManagedProcess(f"{self.name}-{n}", s.stack_dir / "pids" / f"{self.name}-{n}.pid",
                              s.stack_dir / "logs" / f"{self.name}-{n}.log")

    def start(self, n: int = 0) -> None:
        proc = self._proc(n)
        env = {**os.environ, "RELAY_WORKER_METRICS_PORT": "0",  # own table files per worker
               "RELAY_WORKER_DATA_DIR": str(self.settings.stack_dir / "faust" / f"{self.name}-{n}"), **self.env}
        proc.start([sys.executable, "-m", "relay", "worker", self.app, *self.args], env=env)
        self.procs[n] = proc

    def kill(self, n: int = 0) -> None:
        """SIGKILL: no shutdown, no final commit, no changelog flush."""
        pid = self.procs[n].pid()
        assert pid, f"worker {n} is not running"
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.procs[n].pid() is not None:
            assert time.monotonic() < deadline, f"worker {n} (pid {pid}) survived SIGKILL"
            time.sleep(0.05)

    def stop(self, n: int | None = None, *, grace_s: float = 20.0) -> float:
        """SIGTERM (SIGKILL after ``grace_s``); the seconds until the last one was gone."""
        started = time.monotonic()
        for i in [n] if n is not None else list(self.procs):
            self.procs.pop(i).stop(grace_s=grace_s)
        return time.monotonic() - started

    def log(self, n: int = 0) -> str:
        """What worker ``n`` (this run and earlier ones of the same name) wrote so far."""
        path = self._proc(n).log_file
        return path.read_text(errors="replace") if path.exists() else ""

    def alive(self, n: int = 0) -> bool:
        return n in self.procs and self.procs[n].pid() is not None


class Feed:
    """Produces ``count`` events over ``keys`` keys (payload: key and per-key seq), about ``rate``
    per second, from a thread. ``sent[key]`` lists the event ids per key in production order.
    With ``per_transaction=n`` every n records are one Kafka transaction, as Debezium's
    exactly-once source writes them: each commit leaves a control record (an offset hole)."""

    def __init__(self, settings, topic: str, *, count: int, keys: int, rate: float,
                 per_transaction: int = 0, poison_every: int = 0) -> None:
        """``poison_every=n``: every n-th record is a poison one instead (not JSON; ``poison``
        lists their ids, they are not in ``sent``)."""
        self.topic, self.count, self.keys, self.rate = topic, count, keys, rate
        self.poison_every, self.poison = poison_every, []
        self.per_transaction = per_transaction
        extra = {"transactional.id": f"feed-{uuid.uuid4().hex[:8]}"} if per_transaction else {}
        self.producer = Producer(producer_config(settings, **extra))
        self.sent: dict[str, list[str]] = defaultdict(list)
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        per_key: dict[str, int] = defaultdict(int)
        started = time.monotonic()
        if self.per_transaction:
            self.producer.init_transactions(30)
        for i in range(self.count):
            if self.per_transaction and i % self.per_transaction == 0:
                self.producer.begin_transaction()
            key = f"k{i % self.keys}"
            eid = str(uuid.uuid4())
            if self.poison_every and i % self.poison_every == self.poison_every - 1:
                self.producer.produce(self.topic, key=key.encode(), value=b"{poison", headers=[("id", eid.encode())],
                                      on_delivery=lambda err, _m: err and self.errors.append(str(err)))
                self.poison.append(eid)
                continue
            seq = per_key[key]
            per_key[key] += 1
            self.producer.produce(self.topic, key=key.encode(), value=json.dumps({"key": key, "seq": seq}).encode(),
                                  headers=[("id", eid.encode()), ("type", b"Numbered")],
                                  on_delivery=lambda err, _m: err and self.errors.append(str(err)))
            self.sent[key].append(eid)
            if self.per_transaction and (i + 1 == self.count or (i + 1) % self.per_transaction == 0):
                self.producer.commit_transaction(30)
            if i % 50 == 0:
                self.producer.poll(0)
                ahead = (i + 1) / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        if self.producer.flush(60):
            self.errors.append("records not acknowledged within 60 s")

    def start(self) -> "Feed":
        self._thread.start()
        return self

    def join(self, timeout: float = 120) -> "Feed":
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the feed did not finish"
        assert not self.errors, self.errors[:3]
        return self

    @property
    def ids(self) -> set[str]:
        return {eid for ids in self.sent.values() for eid in ids}

    def running(self) -> bool:
        return self._thread.is_alive()
