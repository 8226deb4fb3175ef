"""The inbox with expiry under sustained traffic: does its changelog (and the worker's memory)
stay bounded by the dedup window instead of growing with every event?

A worker (no-op handler, memory store, ``RELAY_INBOX_WINDOW_S`` = ``--window``) handles
``--events`` records produced at ``--rate`` per second. Every 5 s: records handled, the inbox
changelog's records (high - low watermarks) and ``.log`` bytes on the broker's disk, worker RSS.
Without expiry the changelog holds one record per event (~120 bytes each, relay.bench.consumer);
with it, about rate x (window + segment roll + the broker's retention check) records.

    python -m relay.bench.inbox_expiry [--events 1000000] [--rate 2000] [--window 60]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import KafkaError, Message, Producer

from relay.bench.consumer import delete_topics, record_count, topic_files
from relay.bench.noop_app import inbox_changelog
from relay.bench.worker_proc import WorkerProcess, handled
from relay.topics import apply_topics, producer_config


def feed(settings, topic: str, events: int, rate: float, errors: list[str]) -> None:
    producer = Producer(producer_config(settings, **{"linger.ms": 20}))
    pad = "x" * 120
    started = time.monotonic()

    def failed(err: KafkaError | None, _msg: Message) -> None:
        if err:
            errors.append(str(err))

    for i in range(events):
        key = f"agg-{i % 1000:04d}"
        producer.produce(topic, key=key.encode(), value=json.dumps({"seq": i, "pad": pad}).encode(),
                         headers=[("id", str(uuid.uuid4()).encode()), ("type", b"BenchEvent")],
                         on_delivery=failed)
        if i % 200 == 0:
            producer.poll(0)
            ahead = (i + 1) / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    if producer.flush(120):
        errors.append("not acknowledged within 120 s")


def main(argv: list[str] | None = None) -> None:
    from relay.config import load_settings

    ap = argparse.ArgumentParser(prog="python -m relay.bench.inbox_expiry", description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=2000)
    ap.add_argument("--window", type=int, default=60, help="RELAY_INBOX_WINDOW_S (>= 60)")
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args(argv)
    s = load_settings()
    marker = f"bench{uuid.uuid4().hex[:10]}"
    topic = f"outbox.event.{marker}"
    changelog = inbox_changelog(topic, 'memory')
    workdir = Path(tempfile.mkdtemp(prefix=f"relay-{marker}-"))
    apply_topics(s, [topic])
    worker = WorkerProcess(topic, "memory", workdir, env={"RELAY_INBOX_WINDOW_S": str(args.window)}).start()
    errors: list[str] = []
    producer = threading.Thread(target=feed, args=(s, topic, args.events, args.rate, errors), daemon=True)
    samples, started, deadline = [], time.monotonic(), time.monotonic() + args.timeout
    try:
        while handled(worker.port, topic) is None:  # the worker serves metrics once it runs
            worker.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{worker.log.read_text()[-2000:]}")
            time.sleep(0.5)
        producer.start()
        while True:
            time.sleep(5)
            count = worker.handled()
            log_bytes, _, _ = topic_files(s, changelog)
            sample = {"t": round(time.monotonic() - started), "handled": count, "changelog_records":
                      record_count(s, changelog), "changelog_log_bytes": log_bytes, "rss": worker.rss()}
            samples.append(sample)
            if len(samples) % 6 == 0:
                print(json.dumps(sample), flush=True)
            exited = worker.proc is not None and worker.proc.poll() is not None
            if count >= args.events or time.monotonic() > deadline or exited:
                break
    finally:
        worker.stop()
        producer.join(5)
        delete_topics(s, marker)
    last = samples[-1]
    print(json.dumps({"summary": {
        "events": args.events, "handled": last["handled"], "window_s": args.window, "rate": args.rate,
        "changelog_records_end": last["changelog_records"],
        "changelog_records_max": max(x["changelog_records"] for x in samples),
        "changelog_log_bytes_end": last["changelog_log_bytes"],
        "changelog_log_bytes_max": max(x["changelog_log_bytes"] for x in samples),
        "changelog_records_per_event_end": round(last["changelog_records"] / max(last["handled"], 1), 3),
        "rss_end": last["rss"], "rss_max": max(x["rss"] or 0 for x in samples),
        "rss_at_20pct": next((x["rss"] for x in samples if x["handled"] >= args.events * 0.2), None),
        "producer_errors": errors[:3], "worker_log": str(worker.log)}}), flush=True)


if __name__ == "__main__":
    main()
