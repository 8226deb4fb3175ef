"""relay.kafka_logs: rate limiting of Kafka client logs by message shape (no I/O)."""

import logging

from relay.kafka_logs import RateLimit, kafka_logger, quiet_kafka_clients, shape


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(msg: str, *args: object, name: str = "aiokafka.client", level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_numbers_do_not_make_a_new_shape():
    a = record("Unable connect to node with id %s: %s", 1, "[Errno 111] Connect call failed ('127.0.0.1', 59092)")
    b = record("Unable connect to node with id %s: %s", 2, "[Errno 111] Connect call failed ('127.0.0.1', 60092)")
    assert shape(a) == shape(b)
    assert shape(a) != shape(record("Unable to update metadata from [%s]", 1))
    assert shape(a) != shape(record(a.msg, 1, "x", level=logging.WARNING))
    rd = "FAIL [rdkafka#consumer-%d] [thrd:127.0.0.1:60999/bootstrap]: Connect failed (after %dms in state CONNECT)"
    assert shape(record(rd % (1, 0), name="k")) == shape(record(rd % (3, 12), name="k"))


def test_a_flood_is_one_line_per_window_with_the_count():
    clock = Clock()
    limit = RateLimit(20, clock=clock)
    passed = []
    for i in range(1000):  # 1000 reconnect errors over 35 s
        clock.now = i * 0.035
        r = record("Unable connect to node with id %s: %s", 1, f"attempt {i}")
        if limit.filter(r):
            passed.append(r.getMessage())
    assert len(passed) == 2
    assert "suppressed" not in passed[0]
    assert passed[1].endswith("(+571 similar suppressed in the last 20 s)")


def test_distinct_problems_each_get_their_line():
    limit = RateLimit(20, clock=Clock())
    assert limit.filter(record("Unable connect to node with id %s", 1))
    assert limit.filter(record("Failed fetch messages from %s: %s", 1, "NodeNotReadyError"))
    assert not limit.filter(record("Unable connect to node with id %s", 1))
    assert limit.filter(record("Unable connect to node with id %s", 1, name="aiokafka.conn"))


def test_memory_is_bounded():
    limit = RateLimit(20, max_shapes=3, clock=Clock())
    for word in ["a", "b", "c", "d"]:
        assert limit.filter(record(word))
    assert limit.filter(record("a"))  # forgotten: passes again
    assert not limit.filter(record("d"))


def test_loggers_get_the_filter_and_a_sane_level():
    logging.getLogger("aiokafka.consumer.fetcher")
    limit = RateLimit(20, clock=Clock())
    quiet_kafka_clients(limit=limit)
    assert limit in logging.getLogger("aiokafka.consumer.fetcher").filters
    assert limit in logging.getLogger("faust").filters
    assert logging.getLogger("aiokafka.conn").getEffectiveLevel() == logging.WARNING
    librdkafka = kafka_logger()
    assert librdkafka is kafka_logger() and len(librdkafka.filters) == 1
    assert not librdkafka.isEnabledFor(logging.INFO)


def test_a_record_with_a_count_still_formats_under_faust_logging():
    from mode.utils.logging import DefaultFormatter

    clock = Clock()
    limit = RateLimit(20, clock=clock)
    for now in (0, 1, 25):
        clock.now = now
        r = record("Unable to update metadata from %s (100%% %s)", [1], "down")
        passed = limit.filter(r)
    assert passed and r.args == ()
    line = DefaultFormatter("%(message)s").format(r)
    assert line == "Unable to update metadata from [1] (100% down) (+1 similar suppressed in the last 20 s)"
