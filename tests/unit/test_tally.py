"""Tally: buffered handled counts and latencies end up in Prometheus exactly as per-record calls would."""

from prometheus_client import CollectorRegistry, Counter, Histogram

from relay.consume.tally import Tally


def metrics():
    registry = CollectorRegistry()
    counter = Counter("t_handled", "h", ["topic"], registry=registry).labels("a")
    histogram = Histogram("t_latency", "l", ["topic"], registry=registry, buckets=(0.001, 0.01, 0.1)).labels("a")
    return registry, counter, histogram


def test_a_flush_exports_what_the_per_record_calls_would():
    values = [0.0005, 0.001, 0.002, 0.01, 0.05, 0.1, 0.5, 3.0, 0.0]
    direct, counter, histogram = metrics()
    for v in values:
        counter.inc()
        histogram.observe(v)
    tallied, counter2, histogram2 = metrics()
    tally = Tally(counter2, histogram2)
    tally.count += len(values)
    tally.observed += values
    tally.flush()
    assert _samples(tallied) == _samples(direct)
    tally.flush()  # nothing left: a second flush changes nothing
    assert _samples(tallied) == _samples(direct)


def test_without_the_histogram_internals_it_observes_one_by_one():
    class Plain:
        def __init__(self):
            self.seen = []

        def observe(self, value):
            self.seen.append(value)

    class Count:
        n = 0

        def inc(self, n=1):
            self.n += n

    plain, count = Plain(), Count()
    tally = Tally(count, plain)
    tally.count, tally.observed = 2, [0.1, 0.2]
    tally.flush()
    assert plain.seen == [0.1, 0.2] and count.n == 2


def _samples(registry):
    return sorted((s.name, tuple(sorted(s.labels.items())), s.value) for m in registry.collect()
                  for s in m.samples if not s.name.endswith("_created"))
