"""One unpublishable row after the fact, on the real stack: it is reported by id and cause, a
restart that cannot help exits non-zero, and each way out ends with 0 rows lost.

A row becomes unpublishable after it passed every guard when a limit is lowered later (here: one
topic's ``max.message.bytes``, the broker refuses the record) or when a topic name collides with a
topic made outside the outbox. Rows of another aggregate type committed before, with and after it
(in its own transaction too) must all arrive exactly once. Checked with an independent
read_committed consumer (tests.support.kafka), never with our own code.
"""

import json
import subprocess
import sys
import time

import psycopg
import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

import relay.outbox
from relay.headers import OUTBOX_DLQ_TOPIC, event_topic
from relay.topics import admin, apply_topics
from tests.support.kafka import event_id, read_messages, read_until

pytestmark = pytest.mark.integration


def cli(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "relay", *args], capture_output=True, text=True, timeout=timeout)


class Wedge:
    """Rows of ``other`` around one 5 KB row of ``bad``, whose topic accepts only 2,000 bytes."""

    def __init__(self, settings, unique):
        self.settings, self.bad, self.other = settings, f"w{unique}", f"o{unique}"
        self.other_ids: list[str] = []
        self.bad_id = ""

    def lower_limit(self):
        apply_topics(self.settings, [event_topic(self.bad), event_topic(self.other)])
        resource = ConfigResource(ConfigResource.Type.TOPIC, event_topic(self.bad), incremental_configs=[
            ConfigEntry("max.message.bytes", "2000", incremental_operation=AlterConfigOpType.SET)])
        client = admin(self.settings)  # kept alive until the futures are done
        for future in client.incremental_alter_configs([resource]).values():
            future.result()

    def write(self, conn, aggregatetype, payload):
        return str(relay.outbox.write(conn, aggregatetype=aggregatetype, aggregateid=f"k{len(self.other_ids) % 3}",
                                      type="T", payload=payload))

    def commit(self):
        self.lower_limit()
        with psycopg.connect(self.settings.dsn) as conn:
            with conn.transaction():
                self.other_ids += [self.write(conn, self.other, {"n": i}) for i in range(2)]
            with conn.transaction():
                self.other_ids.append(self.write(conn, self.other, {"n": "before, same tx"}))
                self.bad_id = self.write(conn, self.bad, {"blob": "x" * 5000})
                self.other_ids.append(self.write(conn, self.other, {"n": "after, same tx"}))
            with conn.transaction():
                self.other_ids += [self.write(conn, self.other, {"n": f"later {i}"}) for i in range(2)]
        return self

    def reported(self, timeout_s=150):
        """Poll `relay outbox stats` until it names the bad row (and its cause); the stats."""
        t0, last = time.monotonic(), None
        while time.monotonic() - t0 < timeout_s:
            out = cli("outbox", "stats", "--json", timeout=60)
            last = json.loads(out.stdout) if out.stdout.strip() else out.stderr
            if out.returncode == 1 and isinstance(last, dict) and self.bad_id in (last.get("blocked") or ""):
                print(f"stats named the blocked row {time.monotonic() - t0:.1f} s after the commit")
                return last
            time.sleep(2)
        raise AssertionError(f"stats never named row {self.bad_id}: {last}")

    def assert_others_once(self):
        msgs = read_messages(self.settings.bootstrap_servers, event_topic(self.other), set(self.other_ids), 90)
        ids = [event_id(m) for m in msgs]
        assert sorted(ids) == sorted(self.other_ids), "rows of another aggregate type lost or duplicated"


@pytest.fixture
def wedge(stack, settings, unique):
    w = Wedge(settings, unique)
    yield w
    # leave the pipeline flowing for the next test whatever happened here
    apply_topics(settings, [event_topic(w.bad)])
    cli("connectors", "restart", "--all", timeout=120)


def test_oversized_after_the_fact_reported_then_published_once_fixed(wedge, settings):
    wedge.commit()
    stats = wedge.reported()
    failed = [p for p in stats["problems"] if p["code"] == "task_failed"]
    assert failed and "RecordTooLargeException" in failed[0]["message"]
    assert "relay outbox unblock" in failed[0]["action"]

    shown = cli("outbox", "blocked", "--json")
    assert shown.returncode == 1, shown.stderr
    row = json.loads(shown.stdout)["row"]
    assert (row["event_id"], row["aggregatetype"]) == (wedge.bad_id, wedge.bad)
    assert "/" in row["lsn"] and row["size_bytes"] > 5000

    restart = cli("connectors", "restart")
    assert restart.returncode == 1, restart.stderr  # the same record kills it again: no false success
    assert "RecordTooLargeException" in restart.stderr and "Traceback" not in restart.stderr

    fixed = cli("outbox", "unblock", "--retry")
    assert fixed.returncode == 0, fixed.stderr
    wedge.assert_others_once()
    bad = read_messages(settings.bootstrap_servers, event_topic(wedge.bad), {wedge.bad_id}, 60)
    assert [event_id(m) for m in bad] == [wedge.bad_id]


def test_oversized_after_the_fact_dead_lettered_and_replayed(wedge, settings):
    wedge.commit()
    wedge.reported()

    moved = cli("outbox", "unblock", "--dead-letter")
    assert moved.returncode == 0, moved.stderr
    assert f"pinned: event {wedge.bad_id}" in moved.stderr
    wedge.assert_others_once()  # including the one before it in its own transaction

    letters = read_until(settings.bootstrap_servers, OUTBOX_DLQ_TOPIC,
                         lambda recs: any(event_id(m) == wedge.bad_id for m in recs), 60)
    (letter,) = [m for m in letters if event_id(m) == wedge.bad_id]
    headers = {k: v.decode() for k, v in letter.headers()}
    assert headers["dlq.original.topic"] == event_topic(wedge.bad)
    assert "RecordTooLargeException" in headers["dlq.error.message"] and headers["dlq.outbox.lsn"]
    assert len(letter.value()) > 5000

    # once the cause is fixed, the dead letter is published: 0 rows lost in all
    assert cli("topics", "apply").returncode == 0
    replay = cli("dlq", "replay", "--topic", OUTBOX_DLQ_TOPIC, "--id", wedge.bad_id)
    assert replay.returncode == 0, replay.stderr
    bad = read_messages(settings.bootstrap_servers, event_topic(wedge.bad), {wedge.bad_id}, 60)
    assert [event_id(m) for m in bad] == [wedge.bad_id]


def test_topic_collision_after_the_fact_is_dead_lettered(stack, settings, unique):
    """A topic made outside the outbox (``x<u>_y``) collides with aggregate type ``x<u>.y``, which
    the database cannot know of: Kafka refuses to create its topic."""
    outsider, clash, other = f"outbox.event.x{unique}_y", f"x{unique}.y", f"o{unique}"
    client = admin(settings)
    for future in client.create_topics([NewTopic(outsider, 1, 1)]).values():
        future.result()
    apply_topics(settings, [event_topic(other)])
    with psycopg.connect(settings.dsn) as conn, conn.transaction():
        ids = [str(relay.outbox.write(conn, aggregatetype=other, aggregateid="a", type="T", payload={"n": 1}))]
        clash_id = str(relay.outbox.write(conn, aggregatetype=clash, aggregateid="a", type="T", payload={}))
        ids.append(str(relay.outbox.write(conn, aggregatetype=other, aggregateid="a", type="T", payload={"n": 2})))
    deadline = time.monotonic() + 150
    while cli("outbox", "blocked").returncode != 1 and time.monotonic() < deadline:
        time.sleep(2)
    shown = cli("outbox", "blocked", "--json")
    assert json.loads(shown.stdout)["row"]["event_id"] == clash_id, shown.stdout
    moved = cli("outbox", "unblock", "--dead-letter")
    assert moved.returncode == 0, moved.stderr
    msgs = read_messages(settings.bootstrap_servers, event_topic(other), set(ids), 90)
    assert sorted(event_id(m) for m in msgs) == sorted(ids)
    letters = read_until(settings.bootstrap_servers, OUTBOX_DLQ_TOPIC,
                         lambda recs: any(event_id(m) == clash_id for m in recs), 60)
    (letter,) = [m for m in letters if event_id(m) == clash_id]
    assert "collides" in dict(letter.headers())["dlq.error.message"].decode()
