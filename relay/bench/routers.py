"""EventRouter vs plain Debezium on the same outbox table and the same commits (R3).

A second connector reads the outbox table through its own replication slot with
``ExtractNewRecordState`` instead of the EventRouter: one topic ``<prefix>.public.outbox`` for every
aggregate type, the whole row as a JSON value (what a user without the outbox pattern's routing
gets). Both connectors run at once on the same WAL, so they share the machine equally; each
commit burst is observed on both sides by independent consumers, first arrival per event id.
R3 = EventRouter events/s / plain events/s. The second connector drops its slot when it is
deleted (``slot.drop.on.stop``), and the slot is dropped here too if it was left behind.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass

import psycopg
from confluent_kafka import Consumer, KafkaException, TopicPartition

from relay.bench import pipeline
from relay.config import Settings
from relay.connect import ConnectClient, render_outbox_connector
from relay.headers import Header, event_topic
from relay.topics import apply_topics


def plain_config(settings: Settings, marker: str) -> dict[str, str]:
    """Our connector's config with ExtractNewRecordState in place of the EventRouter."""
    cfg = {k: v for k, v in render_outbox_connector(settings).items()
           if not k.startswith("transforms") and k != "heartbeat.action.query"}
    cfg.update({
        "slot.name": f"relay_bench_plain_{marker}", "slot.drop.on.stop": "true",
        "topic.prefix": f"benchplain{marker}", "table.include.list": "public.outbox", "snapshot.mode": "no_data",
        "transforms": "unwrap", "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter", "key.converter.schemas.enable": "false",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter", "value.converter.schemas.enable": "false",
    })
    return cfg


class _Arrivals(threading.Thread):
    """First arrival time per event id on ``topic`` (from its end at start), id from ``id_of``."""

    def __init__(self, settings: Settings, topic: str, id_of) -> None:
        super().__init__(daemon=True)
        self.id_of, self.stopping = id_of, threading.Event()
        self.first: dict[str, float] = {}
        self.consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers,
                                  "group.id": f"bench-arrivals-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False})
        parts = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, self._end(topic, p)) for p in parts])

    def _end(self, topic: str, partition: int, timeout_s: float = 30) -> int:
        """The partition's end offset; a topic created a moment ago may have no leader yet."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def run(self) -> None:
        while not self.stopping.is_set():
            for msg in self.consumer.consume(1000, 0.1):
                if not msg.error():
                    eid = self.id_of(msg)
                    if eid and eid not in self.first:
                        self.first[eid] = time.time()
        self.consumer.close()


def _router_id(msg) -> str:
    return (dict(msg.headers() or []).get(Header.ID.value) or b"").decode()


def _plain_id(msg) -> str:
    try:
        return (json.loads(msg.value()) or {}).get("id", "")
    except (TypeError, ValueError):
        return ""


@dataclass
class Plain:
    settings: Settings
    marker: str = ""

    def __post_init__(self) -> None:
        self.marker = self.marker or uuid.uuid4().hex[:8]
        self.name = f"relay-bench-plain-{self.marker}"
        self.topic = f"benchplain{self.marker}.public.outbox"
        self.client = ConnectClient.for_settings(self.settings)

    def start(self) -> None:
        apply_topics(self.settings, [self.topic])
        self.client.apply(self.name, plain_config(self.settings, self.marker))
        self.client.wait_running(self.name, timeout_s=120)

    def stop(self) -> None:
        from relay.stack.postgres import PostgresPart

        self.client.delete(self.name)
        slot = f"relay_bench_plain_{self.marker}"
        with psycopg.connect(PostgresPart(self.settings).superuser_conninfo(self.settings.pg_database),
                             autocommit=True) as conn:
            for _ in range(50):
                row = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
                if row is None:
                    return
                if not row[0]:
                    conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                    return
                time.sleep(0.2)


def measure(settings: Settings, plain: Plain, *, events: int, writers: int, timeout_s: float = 300) -> dict:
    """One commit burst observed through both connectors."""
    aggregatetype = f"benchrouter{uuid.uuid4().hex[:8]}"
    topic = event_topic(aggregatetype)
    apply_topics(settings, [topic])
    sides = {"router": _Arrivals(settings, topic, _router_id), "plain": _Arrivals(settings, plain.topic, _plain_id)}
    for side in sides.values():
        side.start()
    t0 = time.time()
    ids, commit_rate = pipeline.commit(settings.dsn, aggregatetype, writers=writers, events=events)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(len(set(ids) & side.first.keys()) < len(ids) for side in sides.values()):
        time.sleep(0.2)
    for side in sides.values():
        side.stopping.set()
        side.join(10)
    row: dict = {"events": len(ids), "commit_rate": commit_rate}
    for name, side in sides.items():
        got = [side.first[e] for e in ids if e in side.first]
        row[f"{name}_rate"] = len(got) / max((max(got) if got else time.time()) - t0, 1e-9)
        row[f"{name}_lost"] = len(ids) - len(got)
    return row
