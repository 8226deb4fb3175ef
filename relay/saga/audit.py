"""`relay saga verify`: a run's evidence chain in Postgres against its heads on Kafka.

For each run: the chain's links are checked in order (:func:`relay.governance.evidence.verify`
names the first modified, deleted or inserted entry), then against the last head the
coordinator published to ``outbox.event.saga-evidence``. An ended run must end exactly at its
head (entries after it were added later; a chain that misses it was cut). A live run may have
entries after its last head (written since its last status change): those are checked by the
chain alone, and reported as not yet covered.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from relay.config import Settings
from relay.errors import KafkaUnavailable
from relay.governance.evidence import Finding, Flaw, Link, verify
from relay.headers import event_topic
from relay.saga.evidence import EVIDENCE_AGGREGATE
from relay.saga.state import TERMINAL
from relay.topics import client_config

CHAINS = """
SELECT e.run_id, e.seq, e.prev, e.hash, e.entry, r.status FROM saga_evidence e
LEFT JOIN saga_runs r ON r.run_id = e.run_id
WHERE %(run)s::text IS NULL OR e.run_id = %(run)s::text
ORDER BY e.run_id, e.seq
"""


@dataclass(frozen=True)
class Report:
    run_id: str
    status: str | None
    entries: int
    finding: Finding | None
    uncovered: int = 0      # a live run's entries after its last published head

    @property
    def ok(self) -> bool:
        return self.finding is None

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "status": self.status, "entries": self.entries, "ok": self.ok,
                "finding": None if self.finding is None else str(self.finding), "uncovered": self.uncovered}


def check(chain: list[Link], status: str | None, head: str | None, run_id: str) -> Report:
    """One run's report (pure): the chain alone, then against the published head."""
    finding = verify(chain)
    if finding is not None:
        return Report(run_id, status, len(chain), finding)
    ended = status in {s.value for s in TERMINAL}
    hashes = [x.hash for x in chain]
    if head is None:
        flaw = Finding(chain[-1].seq if chain else 0, Flaw.TRUNCATED, "no head was published for this ended run")
        return Report(run_id, status, len(chain), flaw if ended else None, 0 if ended else len(chain))
    if head not in hashes:
        return Report(run_id, status, len(chain), verify(chain, head))  # cut, or rewritten whole
    uncovered = len(chain) - 1 - hashes.index(head)
    if ended and uncovered:
        return Report(run_id, status, len(chain), verify(chain, head))
    return Report(run_id, status, len(chain), None, uncovered)


def chains(conn: psycopg.Connection[Any], run_id: str | None) -> dict[str, tuple[str | None, list[Link]]]:
    """run id -> (its status, its links in sequence order)."""
    out: dict[str, tuple[str | None, list[Link]]] = {}
    for rid, seq, prev, digest, entry, status in conn.execute(CHAINS, {"run": run_id}):
        content = entry if isinstance(entry, dict) else json.loads(entry)
        out.setdefault(rid, (status, []))[1].append(Link(seq, content, prev, digest))
    return out


def heads(settings: Settings, timeout_s: float = 30.0) -> dict[str, str]:
    """run id -> the last chain head published (the whole compacted topic, read to its end)."""
    topic = event_topic(EVIDENCE_AGGREGATE)
    reader = Consumer({**client_config(settings), "group.id": "relay-saga-verify", "enable.auto.commit": False,
                       "enable.partition.eof": True, "isolation.level": "read_committed"})
    try:
        try:
            meta = reader.list_topics(topic, timeout=timeout_s).topics.get(topic)
        except KafkaException as exc:
            raise KafkaUnavailable(f"reading {topic}: {exc}") from None
        if meta is None or meta.error is not None or not meta.partitions:
            return {}  # never published: no run reached a head yet
        waiting = set(meta.partitions)
        reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in waiting])
        found: dict[str, str] = {}
        deadline = time.monotonic() + timeout_s
        while waiting:
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"{topic}: partitions {sorted(waiting)} not read to the end "
                                       f"in {timeout_s:.0f} s")
            for msg in reader.consume(1000, 0.5):
                err = msg.error()
                if err is not None and err.code() == KafkaError._PARTITION_EOF:
                    waiting.discard(msg.partition() or 0)
                elif err is not None:
                    raise KafkaUnavailable(f"{topic}: {err.str()}")
                elif msg.value():
                    head = json.loads(msg.value() or b"{}")
                    found[str(head["run_id"])] = str(head["head"])
        return found
    finally:
        reader.close()


def verify_runs(settings: Settings, run_id: str | None = None) -> list[Report]:
    """Every run's report (``run_id``: that run's only)."""
    with psycopg.connect(settings.dsn) as conn:
        stored = chains(conn, run_id)
        if run_id is not None and not stored:
            row = conn.execute("SELECT status FROM saga_runs WHERE run_id = %s", (run_id,)).fetchone()
            return [Report(run_id, None if row is None else str(row[0]), 0,
                           Finding(0, Flaw.DELETED, "no evidence stored for this run" if row else "no such run"))]
    published = heads(settings)
    return [check(links, status, published.get(rid), rid) for rid, (status, links) in stored.items()]


__all__ = ["Report", "check", "chains", "heads", "verify_runs"]
