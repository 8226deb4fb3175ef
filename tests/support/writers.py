"""Concurrent outbox writers for tests: one connection per thread, each owning some aggregates,
so that commit order per aggregate is known (it is the order each thread committed)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any, Callable

import psycopg

from relay.outbox import write


class Writers:
    def __init__(self, dsn: str, aggregatetype: str, aggregates: list[str], *, threads: int = 4,
                 payload: Callable[[str, int], Any] = lambda agg, seq: {"agg": agg, "seq": seq},
                 per_aggregate: int | None = None, rate_per_thread: float | None = None) -> None:
        self.dsn, self.aggregatetype, self.payload = dsn, aggregatetype, payload
        self.groups = [aggregates[i::threads] for i in range(threads)]
        self.per_aggregate, self.rate = per_aggregate, rate_per_thread
        self.committed: dict[str, list[str]] = defaultdict(list)
        self.payloads: dict[str, Any] = {}
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(g,), daemon=True) for g in self.groups if g]

    def _run(self, aggregates: list[str]) -> None:
        try:
            with psycopg.connect(self.dsn) as conn:
                seq = 0
                while not self.stop.is_set() and (self.per_aggregate is None or seq < self.per_aggregate):
                    for agg in aggregates:
                        body = self.payload(agg, seq)
                        with conn.transaction():
                            eid = str(write(conn, aggregatetype=self.aggregatetype, aggregateid=agg,
                                            type=f"E{seq}", payload=body))
                        with self._lock:
                            self.committed[agg].append(eid)
                            self.payloads[eid] = body
                        if self.rate:
                            time.sleep(1 / self.rate)
                    seq += 1
        except BaseException as exc:  # noqa: BLE001 - surfaced by join()
            self.errors.append(exc)

    def start(self) -> "Writers":
        for t in self._threads:
            t.start()
        return self

    def join(self) -> "Writers":
        self.stop.set()
        for t in self._threads:
            t.join(60)
        assert not self.errors, self.errors
        return self

    def run(self) -> "Writers":
        self.start()
        for t in self._threads:
            t.join(120)
        assert not self.errors, self.errors
        return self

    @property
    def ids(self) -> set[str]:
        return set(self.payloads)
