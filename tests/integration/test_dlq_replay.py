"""`relay dlq replay` on the real stack: each dead letter reaches its source topic once, however often
replay runs and wherever it is interrupted. Dead letters are produced and the source topic is read
with plain confluent-kafka clients (read_committed), not with the code under test."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from relay.handling.dlq import dead_letter_headers
from relay.topics import apply_topics, producer_config

pytestmark = pytest.mark.integration

PROGRESS = re.compile(r": (\d+)/(\d+) replayed")


def relay(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "relay", "dlq", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def replayed(*args: str) -> dict:
    out = relay("replay", *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def seed(settings, topic: str, count: int, keys: int = 3) -> list[str]:
    """``count`` dead letters of ``topic`` (keys k0..k<keys-1>), as the worker writes them; their ids in order."""
    apply_topics(settings, [topic, f"{topic}.dlq"])
    ids = [str(uuid.uuid4()) for _ in range(count)]
    producer = Producer(producer_config(settings))
    for n, eid in enumerate(ids):
        produce_dead_letter(producer, topic, f"k{n % keys}", eid, n, [("id", eid.encode()), ("type", b"T")])
    assert producer.flush(30) == 0
    return ids


def produce_dead_letter(producer: Producer, topic: str, key: str, eid: str, seq: int, headers: list) -> None:
    producer.produce(f"{topic}.dlq", key=key.encode(), value=json.dumps({"seq": seq, "id": eid}).encode(),
                     headers=dead_letter_headers(headers, topic=topic, partition=0, offset=seq,
                                                 error=ValueError("bad amount"), attempts=4))


def read_all(bootstrap: str, topic: str, timeout_s: float = 60) -> list:
    """Every committed record of ``topic``, beginning to end (independent read_committed consumer)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{time.time_ns()}",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        todo = {p: end for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in todo])
        records, deadline = [], time.monotonic() + timeout_s
        while todo:
            assert time.monotonic() < deadline, f"{topic} not read to its end: {todo}"
            records += [m for m in consumer.consume(500, 0.5) if not m.error()]
            for tp in consumer.position([TopicPartition(topic, p) for p in todo]):
                if tp.offset >= todo[tp.partition]:
                    del todo[tp.partition]
        return records
    finally:
        consumer.close()


def ids_of(records) -> list[str]:
    return [dict(m.headers())["id"].decode() for m in records]


def test_replay_all_twice_sends_each_dead_letter_once(stack, settings, unique):
    topic = f"outbox.event.redrive{unique}"
    ids = seed(settings, topic, 6)
    assert replayed("--topic", topic, "--all")["replayed"] == 6
    assert replayed("--topic", topic, "--all")["replayed"] == 0, "a second replay sends nothing"
    source = read_all(settings.bootstrap_servers, topic)
    assert sorted(ids_of(source)) == sorted(ids), "each dead letter exactly once"
    for k in ("k0", "k1", "k2"):  # per key in dead-letter order
        assert [json.loads(m.value())["seq"] for m in source if m.key() == k.encode()] == \
               [n for n in range(6) if f"k{n % 3}" == k]
    assert all(dict(m.headers())["dlq.replays"] == b"1" for m in source)

    # the replayed record fails again: the worker dead-letters it again, a new dead letter
    first = source[0]
    producer = Producer(producer_config(settings))
    eid = dict(first.headers())["id"].decode()
    produce_dead_letter(producer, topic, first.key().decode(), eid, 99, list(first.headers()))
    assert producer.flush(30) == 0
    again = replayed("--topic", topic, "--all")
    assert again["replayed"] == 1 and again["ids"] == [eid], "only the new dead letter"
    assert replayed("--topic", topic, "--all")["replayed"] == 0
    counts = Counter(ids_of(read_all(settings.bootstrap_servers, topic)))
    assert counts[eid] == 2 and all(counts[i] == 1 for i in ids if i != eid) and len(counts) == 6

    listed = relay("list", "--topic", topic, "--json")
    assert listed.returncode == 0, listed.stderr
    letters = json.loads(listed.stdout)
    assert len(letters) == 7 and all(d["replayed"] for d in letters)
    assert sorted(d["replays"] for d in letters if d["id"] == eid) == [0, 1]
    text = relay("list", "--topic", topic)
    assert text.stdout.count(" replayed ") == 7 and "1 earlier replay(s)" in text.stdout
    assert "7 dead letter(s), 0 not replayed yet" in text.stderr


def test_replay_by_id_is_remembered_and_not_repeated(stack, settings, unique):
    topic = f"outbox.event.redriveid{unique}"
    ids = seed(settings, topic, 4, keys=1)  # one key: one partition, in order
    assert replayed("--topic", topic, "--id", ids[2])["ids"] == [ids[2]], "ahead of the position"
    second = relay("replay", "--topic", topic, "--id", ids[2])
    assert second.returncode == 0 and "already replayed" in second.stderr and "replayed 0" in second.stderr
    dry = relay("replay", "--topic", topic, "--all", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("would replay") == 3 and ids[2] not in dry.stdout
    assert replayed("--topic", topic, "--all")["ids"] == [ids[0], ids[1], ids[3]], "--all skips the one sent by id"
    assert Counter(ids_of(read_all(settings.bootstrap_servers, topic))) == {i: 1 for i in ids}
    assert replayed("--topic", topic, "--id", ids[2], "--force")["ids"] == [ids[2]], "--force sends it again"
    assert Counter(ids_of(read_all(settings.bootstrap_servers, topic)))[ids[2]] == 2


def test_an_interrupted_rate_limited_replay_resumes_and_sends_each_once(stack, settings, unique):
    topic = f"outbox.event.redrivekill{unique}"
    total = 12
    ids = seed(settings, topic, total)
    proc = subprocess.Popen([sys.executable, "-m", "relay", "dlq", "replay", "--topic", topic, "--all", "--rate", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[int] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # one progress line per committed transaction (at most ~1 s of records)
            match = PROGRESS.search(line)
            if match:
                assert int(match.group(2)) == total
                seen.append(int(match.group(1)))
                break
    finally:
        proc.kill()  # SIGKILL by pid, mid-redrive: no cleanup in the CLI
        proc.wait(30)
    assert seen and 0 < seen[0] < total, f"--rate 4 spread {total} records over several transactions: {seen}"
    assert proc.returncode == -9

    resumed = replayed("--topic", topic, "--all")
    assert 0 < resumed["replayed"] <= total - seen[0], "resumed after what was recorded, not from the start"
    assert replayed("--topic", topic, "--all")["replayed"] == 0
    source = read_all(settings.bootstrap_servers, topic)
    assert Counter(ids_of(source)) == {i: 1 for i in ids}, "every dead letter exactly once"
    for k in ("k0", "k1", "k2"):
        seqs = [json.loads(m.value())["seq"] for m in source if m.key() == k.encode()]
        assert seqs == sorted(seqs), f"key {k} out of order: {seqs}"


def test_rate_limited_progress_counts_up_in_steps(stack, settings, unique):
    topic = f"outbox.event.redriverate{unique}"
    seed(settings, topic, 9)
    out = relay("replay", "--topic", topic, "--all", "--rate", "6")
    assert out.returncode == 0, out.stderr
    counts = [int(m.group(1)) for m in PROGRESS.finditer(out.stderr)]
    assert counts == sorted(counts) and counts[-1] == 9 and len(counts) >= 2, out.stderr
    unlimited = f"outbox.event.redrivefast{unique}"
    seed(settings, unlimited, 9)
    fast = relay("replay", "--topic", unlimited, "--all")
    assert [int(m.group(1)) for m in PROGRESS.finditer(fast.stderr)] == [9], "no rate: one transaction"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("command", [["list"], ["show", "--id", "x"], ["replay", "--all"]])
def test_unreachable_kafka_fails_fast_with_one_line(command):
    env = {"RELAY_KAFKA_BOOTSTRAP": f"127.0.0.1:{_closed_port()}"}
    started = time.monotonic()
    out = relay(*command, env=env, timeout=60)
    took = time.monotonic() - started
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "unreachable" in out.stderr, out.stderr
    assert took < 15, f"bounded: {took:.1f} s"
