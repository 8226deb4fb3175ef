"""The kafka engine's gauges: consumer lag per partition and parked keys.

Read on the polling thread (the only thread that calls the consumer, see
relay.consume._kafka.owner) about once a second. Lag counts what the broker holds past the
consumer's position plus what was fetched and is not finished yet.
"""

from __future__ import annotations

import logging
from typing import Iterable, Mapping

from confluent_kafka import Consumer, TopicPartition

from relay.consume._kafka.feed import Feed
from relay.consume._kafka.subscription import KafkaSubscription
from relay.metrics import ConsumerMetrics

log = logging.getLogger("relay.consumer")


def refresh(kafka: Consumer, feeds: Mapping[tuple[str, int], Feed], subs: Iterable[KafkaSubscription],
            metrics: ConsumerMetrics) -> None:
    """Set the gauges; a failure is logged at debug level (a gauge is not worth a crash)."""
    try:
        _refresh(kafka, feeds, subs, metrics)
    except Exception as exc:  # noqa: BLE001
        log.debug("gauges not refreshed: %s", exc)


def _refresh(kafka: Consumer, feeds: Mapping[tuple[str, int], Feed], subs: Iterable[KafkaSubscription],
             metrics: ConsumerMetrics) -> None:
    metrics.parked_keys.set(sum(s.parking.parked_keys() for s in subs))
    tps = [TopicPartition(t, p) for t, p in list(feeds)]  # a copy: the event loop changes feeds
    for tp in kafka.position(tps) if tps else []:
        _low, high = kafka.get_watermark_offsets(tp, cached=True)
        if high is None or high < 0 or tp.offset < 0:
            continue
        feed = feeds.get((tp.topic, tp.partition))
        waiting = len(feed.buffer) + feed.lanes.pending(tp.topic, tp.partition) if feed is not None else 0
        metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, high - tp.offset) + waiting)
