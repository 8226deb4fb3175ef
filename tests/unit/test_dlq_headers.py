from datetime import datetime, timezone

from relay.handling.dlq import DeadLetter, dead_letter_headers, replay_headers


def test_dead_letter_headers_keep_the_original_and_say_why():
    h = dead_letter_headers([("id", b"e1"), ("type", b"T"), ("dlq.attempts", b"9")], topic="outbox.event.order",
                            partition=2, offset=41, error=ValueError("bad amount"), attempts=3,
                            first_failure_at=datetime(2026, 11, 23, tzinfo=timezone.utc))
    d = dict(h)
    assert d["id"] == b"e1" and d["type"] == b"T"
    assert d["dlq.original.topic"] == b"outbox.event.order" and d["dlq.original.partition"] == b"2"
    assert d["dlq.original.offset"] == b"41" and d["dlq.error.class"] == b"ValueError"
    assert d["dlq.error.message"] == b"bad amount" and d["dlq.attempts"] == b"3"
    assert d["dlq.first-failure-at"].startswith(b"2026-11-23")
    assert [k for k, _ in h].count("dlq.attempts") == 1, "earlier dlq headers are replaced"


def test_replay_restores_original_headers_and_counts_replays():
    dead = dead_letter_headers([("id", b"e1"), ("payload-schema", None)], topic="t", partition=0, offset=1,
                               error=KeyError("k"), attempts=1)
    once = replay_headers(dead)
    assert once == [("id", b"e1"), ("payload-schema", None), ("dlq.replays", b"1")]
    again = replay_headers(dead_letter_headers(once, topic="t", partition=0, offset=7, error=KeyError("k"), attempts=1))
    assert dict(again)["dlq.replays"] == b"2"


def test_original_topic_falls_back_to_the_dlq_name():
    d = DeadLetter("outbox.event.order.dlq", 0, 0, b"k", b"{}", (("id", b"e"),))
    assert d.original_topic == "outbox.event.order" and d.summary()["id"] == "e"
