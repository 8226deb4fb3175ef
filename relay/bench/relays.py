"""CDC relay vs polling relay on the same workload, in one run (commit -> Kafka).

Workload: ``writers`` connections commit ``events`` single-event transactions (business row +
outbox row, ~``payload_bytes`` of JSON) as fast as they can. An independent confluent-kafka
consumer records when each event id arrives. Figures: relay throughput (events / time from the
first commit to the last arrival), commit -> Kafka latency p50/p99 (arrival - commit), raw commit
rate with no relay reading (the ceiling), and the gap detector's verdict.

The polling relay runs as a separate ``relay outbox poll`` process on its own database so the two
never see each other's rows; both databases live in the same Postgres server.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field

import psycopg
from confluent_kafka import Consumer, TopicPartition

from relay.config import Settings
from relay.headers import event_topic
from relay.outbox import write
from relay.topics import apply_topics
from relay.verify import Delivered, detect_gaps


@dataclass
class RelayFigures:
    relay: str
    events: int
    commit_rate: float  # events/s committed by the writers during this run
    relay_rate: float  # events/s from first commit to last arrival in Kafka
    p50_ms: float
    p99_ms: float
    lost: int
    duplicates: int
    latencies_ms: list = field(default_factory=list, repr=False)  # commit -> Kafka, per event


def _commit(dsn: str, aggregatetype: str, events: int, writers: int, payload_bytes: int):
    committed_at: dict[str, float] = {}
    per_agg: dict[str, list[str]] = {}
    lock = threading.Lock()
    pad = "x" * max(0, payload_bytes - 60)

    def run(w: int) -> None:
        with psycopg.connect(dsn) as conn:
            for i in range(events // writers):
                agg = f"w{w}-{i % 50}"
                with conn.transaction():
                    eid = str(write(conn, aggregatetype=aggregatetype, aggregateid=agg, type="Bench",
                                    payload={"i": i, "pad": pad}))
                now = time.time()
                with lock:
                    committed_at[eid] = now
                    per_agg.setdefault(agg, []).append(eid)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(writers)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return t0, time.time(), committed_at, per_agg


def _observe(settings: Settings, topic: str, expected: int, stop: threading.Event, out: list) -> None:
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"bench-{time.time_ns()}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.topic_partitions)])
    while not stop.is_set():
        # stamped when librdkafka hands the records over: consume(n, timeout) alone would hold them
        # until n records or the timeout (+ up to 100 ms at a few hundred events/s)
        first = consumer.poll(0.1)
        for msg in ([first, *consumer.consume(999, 0)] if first is not None else []):
            if not msg.error():
                raw_id, key = dict(msg.headers() or []).get("id", b""), msg.key()
                partition, offset = msg.partition(), msg.offset()
                assert isinstance(raw_id, bytes) and key is not None and partition is not None and offset is not None
                out.append((time.time(), Delivered(key.decode(), raw_id.decode(), partition, offset)))
    consumer.close()


def measure(settings: Settings, relay: str, dsn: str, *, events: int, writers: int, payload_bytes: int,
            timeout_s: float = 300) -> RelayFigures:
    aggregatetype = f"bench{relay}{uuid.uuid4().hex[:10]}"  # a topic of its own, even within one second
    topic = event_topic(aggregatetype)
    apply_topics(settings, [topic])
    arrivals: list = []
    stop = threading.Event()
    observer = threading.Thread(target=_observe, args=(settings, topic, events, stop, arrivals), daemon=True)
    observer.start()
    t0, t1, committed_at, per_agg = _commit(dsn, aggregatetype, events, writers, payload_bytes)
    deadline = time.time() + timeout_s
    while time.time() < deadline and len(committed_at.keys() & {d.event_id for _, d in arrivals}) < len(committed_at):
        time.sleep(0.1)
    stop.set()
    observer.join(10)
    first: dict[str, float] = {}
    for at, d in arrivals:
        first.setdefault(d.event_id, at)
    report = detect_gaps(per_agg, [d for _, d in arrivals])
    lat = sorted((first[e] - c) * 1000 for e, c in committed_at.items() if e in first)
    last = max(first.values()) if first else t1
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [float("nan")] * 99
    return RelayFigures(relay, len(committed_at), len(committed_at) / (t1 - t0), len(committed_at) / (last - t0),
                        q[49], q[98], len(report.lost), report.duplicates, lat)


def main() -> None:  # python -m relay.bench.relays [events] [writers]
    from relay.config import load_settings

    s = load_settings()
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    writers = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    poller_dsn = s.dsn.rsplit("/", 1)[0] + "/relay_poller"
    env = {**os.environ, "RELAY_PG_DSN": poller_dsn, "RELAY_POLLER_METRICS_PORT": "0"}
    poller = subprocess.Popen([sys.executable, "-m", "relay", "outbox", "poll"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        rows = [measure(s, "cdc", s.dsn, events=events, writers=writers, payload_bytes=1000),
                measure(s, "poller", poller_dsn, events=events, writers=writers, payload_bytes=1000)]
    finally:
        poller.terminate()
        poller.wait(30)
    for r in rows:
        print({k: v for k, v in asdict(r).items() if k != "latencies_ms"})
    cdc, pol = rows
    print(f"poller/cdc throughput ratio {pol.relay_rate / cdc.relay_rate:.2f}; "
          f"cdc relay/commit {cdc.relay_rate / cdc.commit_rate:.2f}; "
          f"poller relay/commit {pol.relay_rate / pol.commit_rate:.2f}")


if __name__ == "__main__":
    main()
