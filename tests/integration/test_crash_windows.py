"""The crash windows of the side-effects article, each against real processes SIGKILLed at the
point (RELAY_CRASH_AT) and started again, with Kafka, Connect and Postgres real:

1. before the command transaction commits: nothing happened, the retry is clean (once);
2. after it committed, before the response: the command again is dropped by the inbox, and a
   retried step (same idempotency key, new command) gets the first result, nothing sent again;
   the key with another payload is refused;
3. after the outside call, before recording it: the next attempt asks the target, which has it:
   committed with the target's result, no second call;
4. after the outbox write, before publishing (the polling relay): published after the restart;
5. after publishing, before marking it sent: published twice, and the consumer's inbox drops
   the copy (its effect once).
And an ambiguous call (the answer lost after the target acted): listed by `relay effects list
--state ambiguous`, resolved by the worker's reconciler through the lookup, never sent again.
"""

import json
import subprocess
import sys
import time

import psycopg
import pytest

from relay.headers import Header, event_topic
from relay.outbox.writer import write
from relay.topics import apply_topics
from tests.support import effects_app
from tests.support.external_app import prepare, replies, send_command
from tests.support.kafka import read_until
from tests.support.relays import poller_relay
from tests.support.workers import Workers

pytestmark = pytest.mark.integration
APP = "tests.support.external_app:make_participants"


def until(what, check, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:.0f} s"
        time.sleep(0.2)


def participants(settings, wf, unique, crash=None, **env):
    apply_topics(settings, [event_topic(t) for t in (f"{wf}.note", f"{wf}.pay", f"saga.{wf}")])
    prepare(settings.dsn)
    w = Workers(settings, APP, f"ext-{unique}", env={"SAGA_WF": wf, **({"RELAY_CRASH_AT": crash} if crash else {}),
                                                     **env})
    w.start()
    return w


def crashed(w):
    until("the worker SIGKILLed at its crash point", lambda: w.procs[0].pid() is None)


def pay_until_crash(settings, wf, key, unique, point):
    """Participants armed at ``point``, one pay command (amount 5), the worker dead at the point."""
    w = participants(settings, wf, unique, crash=point)
    try:
        cid = send_command(settings.dsn, wf, "pay", key, {"amount": 5})
        crashed(w)
    except BaseException:
        w.stop()
        raise
    return w, cid


def restart(w, **env):
    w.env = {k: v for k, v in w.env.items() if k not in ("RELAY_CRASH_AT", "EXT_TIMEOUT")} | env
    w.start()


def count(dsn, sql, *args):
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, args).fetchone()[0]


def effect(dsn, key):
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT state, history FROM effects WHERE idempotency_key = %s", (key,)).fetchone()
    return row or (None, [])


def test_1_before_the_command_commits_nothing_happened_and_the_retry_is_clean(stack, settings, unique):
    wf = f"cw1{unique}"
    w = participants(settings, wf, unique, crash="before_command_commit")
    try:
        cid = send_command(settings.dsn, wf, "note", f"{wf}r/note", {"x": 1})
        crashed(w)
        assert count(settings.dsn, "SELECT count(*) FROM ext_notes WHERE wf = %s", wf) == 0 and not replies(
            settings.dsn, cid)
        restart(w)
        until("the reply", lambda: replies(settings.dsn, cid))
    finally:
        w.stop()
    assert count(settings.dsn, "SELECT count(*) FROM ext_notes WHERE wf = %s", wf) == 1
    assert [r["ok"] for r in replies(settings.dsn, cid)] == [True]


def test_2_after_commit_before_the_response_a_retry_with_the_key_gets_the_first_result(stack, settings, unique):
    wf, key = f"cw2{unique}", f"cw2{unique}r/pay"
    w, cid = pay_until_crash(settings, wf, key, unique, "after_command_commit_before_response")
    try:
        [first] = replies(settings.dsn, cid)  # committed with the effect, before the crash
        assert first["ok"] and effect(settings.dsn, key)[0] == "committed"
        restart(w)
        again = send_command(settings.dsn, wf, "pay", key, {"amount": 5})  # the step retried: a new command
        [second] = until("the retry's reply", lambda: replies(settings.dsn, again))
        other = send_command(settings.dsn, wf, "pay", key, {"amount": 6})  # the key, another request
        [refused] = until("the refusal", lambda: replies(settings.dsn, other))
        time.sleep(1)
    finally:
        w.stop()
    assert second["ok"] and second["output"] == first["output"], "the first result, not a second charge"
    assert not refused["ok"] and "one key, one request" in refused["error"] and not refused["retriable"]
    assert count(settings.dsn, "SELECT count(*) FROM ext_provider WHERE wf = %s", wf) == 1
    assert len(replies(settings.dsn, cid)) == 1, "the command delivered again was dropped by the inbox"


def test_3_after_the_call_before_recording_it_reconciliation_prevents_a_second_call(stack, settings, unique):
    wf, key = f"cw3{unique}", f"cw3{unique}r/pay"
    w, cid = pay_until_crash(settings, wf, key, unique, "after_external_send_before_record")
    try:
        assert count(settings.dsn, "SELECT count(*) FROM ext_provider WHERE wf = %s", wf) == 1
        assert effect(settings.dsn, key)[0] == "started" and not replies(settings.dsn, cid)
        restart(w)
        [reply] = until("the reply after the restart", lambda: replies(settings.dsn, cid))
    finally:
        w.stop()
    charge = count(settings.dsn, "SELECT charge_id FROM ext_provider WHERE wf = %s", wf)
    assert reply["ok"] and reply["output"] == {"charge_id": charge}, "the target's own record of it"
    assert count(settings.dsn, "SELECT count(*) FROM ext_provider WHERE wf = %s", wf) == 1
    state, history = effect(settings.dsn, key)
    assert state == "committed" and "reconciled" in history[-1]["why"]


def test_an_ambiguous_call_is_listed_and_resolved_by_the_reconciler_never_sent_again(stack, settings, unique):
    wf, key = f"cwa{unique}", f"cwa{unique}r/pay"
    w = participants(settings, wf, unique, EXT_TIMEOUT="1")
    try:
        cid = send_command(settings.dsn, wf, "pay", key, {"amount": 9})
        [reply] = until("the failure reply", lambda: replies(settings.dsn, cid))
        assert not reply["ok"] and reply["retriable"] and "ambiguous" in reply["error"]
        listed = subprocess.run([sys.executable, "-m", "relay", "effects", "list", "--state", "ambiguous", "--json"],
                                capture_output=True, text=True, timeout=60)
        assert key in {r["idempotency_key"] for r in json.loads(listed.stdout)}, listed.stdout + listed.stderr
        until("the reconciler's resolution", lambda: effect(settings.dsn, key)[0] == "committed", 30)
        again = send_command(settings.dsn, wf, "pay", key, {"amount": 9})  # the step's retry
        [second] = until("the retry's reply", lambda: replies(settings.dsn, again))
    finally:
        w.stop()
    assert second["ok"] and count(settings.dsn, "SELECT count(*) FROM ext_provider WHERE wf = %s", wf) == 1


def _poller_event(relay, aggregate):
    with psycopg.connect(relay.dsn) as conn, conn.transaction():
        return str(write(conn, aggregatetype=aggregate, aggregateid="k1", type="Crash", payload={"n": 1}))


def _ids(records):
    return [dict(r.headers() or [])[Header.ID.value].decode() for r in records]


def test_4_after_the_outbox_write_before_publishing_the_relay_publishes_after_restart(stack, settings, unique):
    aggregate = f"cw4{unique}"
    topic = event_topic(aggregate)
    apply_topics(settings, [topic])
    crashing = poller_relay(stack, settings, RELAY_CRASH_AT="after_outbox_write_before_publish")
    event_id = _poller_event(crashing, aggregate)
    crashing.start()
    try:
        until("the poller SIGKILLed before publishing", lambda: crashing.procs[0].pid() is None)
        assert read_until(settings.bootstrap_servers, topic, lambda r: len(r) > 0, timeout_s=3) == []
    finally:
        crashing.stop()
    relay = poller_relay(stack, settings)
    relay.start()
    try:
        records = read_until(settings.bootstrap_servers, topic, lambda r: len(r) >= 1)
        time.sleep(1)
        records = read_until(settings.bootstrap_servers, topic, lambda r: False, timeout_s=2)
    finally:
        relay.stop()
    assert _ids(records) == [event_id]


def test_5_after_publishing_before_marking_it_sent_the_copy_is_dropped_by_the_inbox(stack, settings, unique):
    aggregate = f"cw5{unique}"
    topic = event_topic(aggregate)
    apply_topics(settings, [topic])
    effects_app.prepare(settings.dsn)
    crashing = poller_relay(stack, settings, RELAY_CRASH_AT="after_publish_before_mark_sent")
    event_id = _poller_event(crashing, aggregate)
    crashing.start()
    try:
        until("the poller SIGKILLed after publishing", lambda: crashing.procs[0].pid() is None)
    finally:
        crashing.stop()
    relay = poller_relay(stack, settings)
    relay.start()
    consumer = Workers(settings, "tests.support.effects_app:make_consumer", f"cw5-{unique}",
                       env={"EFFECTS_TOPIC": topic})
    consumer.start()
    try:
        records = read_until(settings.bootstrap_servers, topic, lambda r: len(r) >= 2)
        until("the consumer's effect", lambda: effects_app.effects(settings, topic))
        time.sleep(2)  # time to handle the copy too
        handled = effects_app.effects(settings, topic)
    finally:
        consumer.stop()
        relay.stop()
    assert _ids(records) == [event_id, event_id], "published twice: the mark was lost with the poller"
    assert [e[0] for e in handled] == [event_id], "the inbox dropped the copy"
