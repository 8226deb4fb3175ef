"""The kafka engine's changelog acknowledgements (relay.consume._kafka.deliveries), without a
broker: reports are fed by hand, in the per-partition order the idempotent producer gives."""

import asyncio

from relay.consume._kafka.deliveries import Deliveries
from relay.errors import KafkaUnavailable


class _Msg:
    def __init__(self, topic: str, partition: int, key: bytes) -> None:
        self._t, self._p, self._k = topic, partition, key

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def key(self) -> bytes:
        return self._k


def _deliveries(loop: asyncio.AbstractEventLoop, fatal: list[BaseException]) -> Deliveries:
    d = Deliveries({"bootstrap.servers": "127.0.0.1:1"}, loop, fatal.append)  # never started, never connects
    d._produce = lambda topic, **kw: None  # type: ignore[method-assign]
    return d


def test_acked_is_the_finished_prefix_across_partitions():
    loop, fatal = asyncio.new_event_loop(), []
    d = _deliveries(loop, fatal)
    assert [d.write("t", 0, b"a", b"1"), d.write("t", 1, b"b", b"1"), d.write("t", 0, b"c", b"1")] == [1, 2, 3]
    d._written(None, _Msg("t", 0, b"a"))
    assert d.acked == 1
    d._written(None, _Msg("t", 0, b"c"))  # write 3, while write 2 (partition 1) is still out
    assert d.acked == 1 and not d.reached(3)
    d._written(None, _Msg("t", 1, b"b"))
    assert d.acked == 3 and d.reached(3) and not fatal
    loop.close()


def test_a_report_out_of_produce_order_is_fatal_not_an_acknowledgement():
    loop, fatal = asyncio.new_event_loop(), []
    d = _deliveries(loop, fatal)
    d.write("t", 0, b"a", b"1")
    d.write("t", 0, b"b", b"1")
    d._written(None, _Msg("t", 0, b"b"))
    loop.run_until_complete(asyncio.sleep(0))  # the fatal callback runs on the loop
    assert d.acked == 0 and not d.reached(1)
    assert len(fatal) == 1 and isinstance(fatal[0], KafkaUnavailable) and "out of produce order" in str(fatal[0])
    loop.close()
