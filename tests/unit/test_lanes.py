"""Lanes: per-key order, bounded in flight per partition, acks only for a finished prefix (the
guard against committing past an unfinished record, faust-streaming#606). Pure asyncio."""

import asyncio
from dataclasses import dataclass, field

import pytest

from relay.consume.lanes import Lanes


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int
    key: bytes


@dataclass
class Ev:
    message: Msg
    acked: list = field(default_factory=list)

    def ack(self) -> bool:
        self.acked.append(self.message.offset)
        return True


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


@pytest.mark.parametrize("ack_prefix, expected", [(False, [0, 1, 2]), (True, [2])])
def test_acks_follow_offset_order_even_when_later_records_finish_first(ack_prefix, expected):
    """``ack_prefix`` (the kafka engine, whose ack covers every earlier record of the partition):
    one ack, the last event of the finished prefix."""
    async def main():
        acked, release, started = [], {}, []

        async def process(msg):
            started.append(msg.offset)
            release[msg.offset] = asyncio.Event()
            await release[msg.offset].wait()

        lanes = Lanes(4, 10, process, ack_prefix=ack_prefix)
        by_lane = {}
        for i in range(100):  # three keys on three different lanes
            by_lane.setdefault(lanes.lane_of(b"key%d" % i), b"key%d" % i)
        keys = list(by_lane.values())[:3]
        for off, key in enumerate(keys):
            await lanes.submit(Ev(Msg("t", 0, off, key), acked))
        while len(started) < 3:
            await asyncio.sleep(0)
        release[2].set()
        release[1].set()
        await asyncio.sleep(0.01)
        assert acked == [], "1 and 2 are done, but 0 is not: nothing may be acked"
        release[0].set()
        await lanes.drain("t", 0)
        assert acked == expected
        await lanes.stop()
    run(main())


def test_one_key_is_handled_in_order_on_one_lane():
    async def main():
        seen = []

        async def process(msg):
            await asyncio.sleep(0.001 * (5 - msg.offset % 5))  # later records are quicker
            seen.append((msg.key, msg.offset))

        lanes = Lanes(8, 100, process)
        for off in range(40):
            await lanes.submit(Ev(Msg("t", 0, off, b"k%d" % (off % 4))))
        await lanes.drain("t", 0)
        for k in range(4):
            offs = [o for key, o in seen if key == b"k%d" % k]
            assert offs == sorted(offs) and len(offs) == 10
        await lanes.stop()
    run(main())


def test_in_flight_is_bounded_per_partition():
    async def main():
        gate = asyncio.Event()

        async def process(msg):
            await gate.wait()

        lanes = Lanes(4, 3, process)
        for off in range(3):
            await lanes.submit(Ev(Msg("t", 0, off, b"k%d" % off)))
        blocked = asyncio.ensure_future(lanes.submit(Ev(Msg("t", 0, 3, b"x"))))
        other = asyncio.ensure_future(lanes.submit(Ev(Msg("t", 1, 0, b"y"))))  # other partition: room
        await asyncio.sleep(0.01)
        assert not blocked.done() and other.done() and lanes.in_flight() == 4
        gate.set()
        await asyncio.wait_for(blocked, 1)
        await lanes.drain("t", 0)
        await lanes.stop()
    run(main())


def test_an_escaping_failure_leaves_the_record_unacked_and_the_lane_alive():
    async def main():
        acked = []

        async def process(msg):
            if msg.offset == 1:
                raise RuntimeError("bug")

        lanes = Lanes(1, 10, process)
        for off in range(3):
            await lanes.submit(Ev(Msg("t", 0, off, b"k"), acked))
        await asyncio.sleep(0.05)
        assert acked == [0], "the records after the unfinished one are not acked either"
        assert lanes.in_flight() == 2
        await lanes.stop()
    run(main())


def test_settings_are_validated():
    with pytest.raises(ValueError, match="lanes=0"):
        Lanes(0, 1, None)


@pytest.mark.parametrize("count", [1, 3])
def test_a_submitted_run_is_handled_in_batches_of_at_most_batch_in_key_order(count):
    """submit_run (the feeder's bulk path): one queue item per lane, yet no batch above ``batch``
    and every key's records in offset order; the acks cover everything."""
    async def main():
        acked, batches = [], []

        async def process_batch(events):
            batches.append([e.message for e in events])

        lanes = Lanes(count, 100, lambda _m: None, batch=3, process_batch=process_batch)
        lanes.submit_run([Ev(Msg("t", 0, off, b"k%d" % (off % 4)), acked) for off in range(10)])
        await lanes.drain("t", 0)
        assert all(1 <= len(b) <= 3 for b in batches) and sum(len(b) for b in batches) == 10
        seen = [m for b in batches for m in b]
        for key in {m.key for m in seen}:
            offsets = [m.offset for m in seen if m.key == key]
            assert offsets == sorted(offsets), f"key {key!r} out of order: {offsets}"
        assert acked == list(range(10))
        await lanes.stop()
    run(main())
