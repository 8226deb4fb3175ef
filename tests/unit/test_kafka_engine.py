"""The confluent-kafka engine's pure parts (no broker): changelog tables, feeds, up-front claims."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict

from relay.consume._kafka.feed import Feed, Rec
from relay.consume._kafka.tables import ChangelogTable, bind, changelog_topic
from relay.consume.batch import Batch
from relay.consume.lanes import Lanes
from relay.handling.breaker import CircuitBreaker
from relay.handling.event import event_id_of
from relay.handling.parking import ParkedKey
from relay.headers import Header


def test_table_writes_go_to_the_bound_partition_in_fausts_encoding():
    written = []
    table = ChangelogTable(changelog_topic("app", "inbox-t"), lambda *rec: written.append(rec))
    bind(2)
    table["e-1"] = 1795912679.4472456
    del table["e-1"]
    table['q"uote'] = 1.5
    assert written == [("app-inbox-t-changelog", 2, b'"e-1"', b"1795912679.4472456"),
                       ("app-inbox-t-changelog", 2, b'"e-1"', None),
                       ("app-inbox-t-changelog", 2, json.dumps('q"uote').encode(), b"1.5")]
    bind(1)
    assert table.get('q"uote') is None  # partition-local
    bind(2)
    assert table['q"uote'] == 1.5


def test_a_timestamp_table_writes_json_numbers_to_the_millisecond():
    written = []
    table = ChangelogTable("t", lambda *rec: written.append(rec), timestamps=True)
    bind(0)
    table["e-1"] = 1795912679.4472456
    table["é"] = float("inf")  # not finite, not ASCII: json's own text
    assert written == [("t", 0, b'"e-1"', b"1795912679.447"), ("t", 0, json.dumps("é").encode(), b"Infinity")]
    assert table["e-1"] == 1795912679.4472456, "the table itself keeps the full value"
    table.apply(0, b'"e-2"', b"1795912679.447")
    assert table["e-2"] == 1795912679.447


def test_restore_keeps_the_latest_value_and_drop_forgets_a_partition():
    table = ChangelogTable("t", lambda *rec: None, encode=asdict, decode=lambda raw: ParkedKey(**raw))
    parked = json.dumps(asdict(ParkedKey("h", 1, 0))).encode()
    table.restoring(0)
    table.apply(0, b'"K1"', parked)
    table.apply(0, b'"K2"', parked)
    table.apply(0, b'"K2"', b"null")  # how Faust's parking table deletes
    table.apply(0, b'"K3"', parked)
    table.apply(0, b'"K3"', None)  # a tombstone
    bind(0)
    assert dict(table.parts[0]) == {"K1": ParkedKey("h", 1, 0)} and len(table) == 1
    table.drop({0})
    assert len(table) == 0


class _Msg:
    def __init__(self, topic, partition, offset, headers=None):
        self._t, self._p, self._o, self._h = topic, partition, offset, headers

    def topic(self): return self._t
    def partition(self): return self._p
    def offset(self): return self._o
    def key(self): return b"k"
    def value(self): return b"{}"
    def headers(self): return self._h
    def timestamp(self): return (1, 1000)


class _Gauge:
    def set(self, _v):
        pass


def _feed(lanes, breaker=None, *, stage=False, high=4, low=1):
    paused = []
    feed = Feed("t", 0, lanes, breaker or CircuitBreaker(failure_threshold=2, open_for_s=5),
                stage=stage, pause=lambda t, p, on: paused.append(on), gauge=_Gauge(), high=high, low=low)
    return feed, paused


def test_feed_hands_over_in_order_up_to_the_room_and_pauses_a_full_buffer():
    async def run():
        handled = []

        async def process(rec):
            handled.append(rec.offset)
        lanes = Lanes(1, 2, process, process_batch=None)
        feed, paused = _feed(lanes)
        feed.push([Rec(_Msg("t", 0, o), lambda r: None) for o in range(6)])
        assert lanes.pending("t", 0) == 2 and len(feed.buffer) == 4 and paused == [True]
        for _ in range(20):
            await asyncio.sleep(0)
            feed.pump()
        await lanes.stop()
        return handled, paused
    handled, paused = asyncio.run(run())
    assert handled == [0, 1, 2, 3, 4, 5] and paused == [True, False]


def test_a_stage_record_waits_until_due_and_an_open_circuit_takes_nothing():
    async def run():
        lanes = Lanes(1, 10, lambda rec: asyncio.sleep(0))
        due = [(Header.RETRY_DUE_AT.value, f"{time.time() + 60:.3f}".encode())]
        stage, _ = _feed(lanes, stage=True)
        stage.push([Rec(_Msg("t", 0, 0, due), lambda r: None)])
        waiting = (len(stage.buffer), lanes.pending("t", 0))
        stage.close()
        breaker = CircuitBreaker(failure_threshold=1, open_for_s=30)
        breaker.record_failure(True)
        source, _ = _feed(lanes, breaker)
        source.push([Rec(_Msg("t", 1, 0), lambda r: None)])
        gated = (len(source.buffer), lanes.pending("t", 1))
        source.close()
        await lanes.stop()
        return waiting, gated
    assert asyncio.run(run()) == ((1, 0), (1, 0))


def test_up_front_claims_hand_each_id_out_once():
    batch = Batch(conn=None, claims={"a": True, "b": False})
    assert [batch.take_claim(i) for i in ("a", "a", "b", "c")] == [True, False, False, None]
    assert Batch(conn=None).take_claim("a") is None


def test_event_id_of_is_what_decode_gives():
    canonical = "1f87cc59-9c1b-48b3-a127-075a0271911b"
    assert event_id_of([("id", canonical.encode())]) == canonical
    assert event_id_of([("id", b'"1F87CC59-9C1B-48B3-A127-075A0271911B"')]) == canonical
    assert event_id_of([("id", b"nope")]) is None and event_id_of([]) is None


def test_a_revoked_partition_drops_its_queued_records_and_waits_for_the_running_one():
    async def run():
        started, release = [], asyncio.Event()

        async def process(rec):
            started.append(rec.offset)
            await release.wait()
        lanes = Lanes(1, 10, process)
        acked = []
        feed, _ = _feed(lanes, high=100)
        feed._ack = acked.append
        feed.push([Rec(_Msg("t", 0, o), feed.acked) for o in range(3)])
        await asyncio.sleep(0.01)  # the lane started offset 0 only
        feed.close()
        dropping = asyncio.ensure_future(lanes.drop("t", 0))
        await asyncio.sleep(0.01)
        waiting = not dropping.done()
        release.set()
        await asyncio.wait_for(dropping, 1)
        await asyncio.sleep(0.01)
        await lanes.stop()
        return started, waiting, acked
    started, waiting, acked = asyncio.run(run())
    assert started == [0] and waiting, "1 and 2 were dropped, 0 was waited for"
    assert acked == [], "an ack after the revocation is the next owner's business"


def test_closing_a_paused_feed_resumes_its_partition():
    async def run():
        lanes = Lanes(1, 1, lambda rec: asyncio.sleep(10))
        feed, paused = _feed(lanes, high=2, low=0)
        feed.push([Rec(_Msg("t", 0, o), lambda r: None) for o in range(5)])
        feed.close()
        await lanes.stop()
        return paused
    assert asyncio.run(run()) == [True, False]
