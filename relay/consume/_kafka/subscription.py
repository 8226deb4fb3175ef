"""One subscription on the confluent-kafka engine: its changelog tables (inbox, parking), its
pipeline, one set of lanes per topic it reads (the source and each retry stage, as the Faust
adapter has one agent per topic) and a feed per assigned partition. What a record becomes is
decided by relay.consume.pipeline; here is only the plumbing around it.

A Postgres-inbox subscription keeps its inbox table in memory only: ``processed_events`` is its
inbox (the claim commits with the effect), and the table only spares a copy this process
already handled a round trip to the database. A changelog for it cost a record per event and,
worse, a restore of every id of the dedup window at each assignment: a saga coordinator that
had handled a few thousand runs took 5-13 s to start, and one SIGKILLed every 3 s never did."""

from __future__ import annotations

from dataclasses import asdict
from typing import Callable

from relay.consume._kafka.feed import Feed, Rec
from relay.consume._kafka.tables import ChangelogTable, Produce, bind, changelog_topic
from relay.consume.consumer import InboxKind, Resolved, Subscription
from relay.consume.group_commit import settle_all
from relay.consume.lanes import Lanes
from relay.consume.pipeline import Invoke, OpenBatch, Pipeline, Port
from relay.handling.breaker import CircuitBreaker
from relay.handling.idempotency import Inbox
from relay.handling.parking import ParkedKey, Parking
from relay.handling.retry import RetryPolicy
from relay.metrics import ConsumerMetrics


def _kept_here(topic: str, partition: int, key: bytes, value: bytes | None) -> None:
    """The produce of a table without a changelog (a Postgres-inbox subscription's inbox)."""


FEED_HIGH = 2000  # buffered records per partition that pause its fetching (resumed at FEED_HIGH // 4)


class KafkaSubscription:
    def __init__(self, app_id: str, sub: Subscription, opts: Resolved, invoke: Invoke, metrics: ConsumerMetrics,
                 port: Port, produce: Produce, *, open_batch: OpenBatch | None = None) -> None:
        self.sub, self.opts, self.open_batch, self.metrics = sub, opts, open_batch, metrics
        self.logged_inbox = sub.inbox is not InboxKind.POSTGRES
        self.inbox_table = ChangelogTable(changelog_topic(app_id, f"inbox-{sub.name}"),
                                          produce if self.logged_inbox else _kept_here, timestamps=True)
        self.parked_table = ChangelogTable(changelog_topic(app_id, f"parked-{sub.name}"), produce,
                                           encode=asdict, decode=lambda raw: ParkedKey(**raw))
        self.inbox = Inbox(self.inbox_table, window_s=opts.dedup_window_s)
        self.parking = Parking(self.parked_table)
        self.breaker = CircuitBreaker(failure_threshold=opts.breaker_failures, open_for_s=opts.breaker_open_s)
        self.pipeline = Pipeline(topic=sub.topic, invoke=invoke, inbox=self.inbox, parking=self.parking,
                                 policy=RetryPolicy(opts.retry_delays), breaker=self.breaker, metrics=metrics,
                                 port=port, types=sub.types)
        self.breaker_gauge = metrics.breaker_state.labels(sub.topic)
        self.lanes: dict[str, Lanes] = {}
        self.feeds: dict[tuple[str, int], Feed] = {}

    def reads(self) -> list[str]:
        """The topics this subscription consumes: its source and its retry stages."""
        return [self.sub.topic, *self.pipeline.stages.values()]

    def changelogs(self) -> dict[str, dict[str, str]]:
        """Its changelog topics with their creation configs (Faust's, so engines can switch)."""
        window_ms = int(self.opts.dedup_window_s * 1000)
        inbox = {self.inbox_table.topic: {"cleanup.policy": "compact,delete", "retention.ms": str(window_ms),
                                          # retention drops whole segments: roll them often enough
                                          "segment.ms": str(max(60_000, window_ms // 7))}}
        return {**(inbox if self.logged_inbox else {}), self.parked_table.topic: {"cleanup.policy": "compact"}}

    def tables(self) -> list[ChangelogTable]:
        """The tables restored from their changelogs at assignment."""
        return [self.inbox_table, self.parked_table] if self.logged_inbox else [self.parked_table]

    def start(self, on_room: Callable[[str, int], None]) -> None:
        # a lane takes every queued record at once: without a transaction around them (table
        # inbox) that only spares per-record hand-over costs, the records still run one by one
        take = self.opts.batch_size if self.open_batch is not None else self.opts.max_in_flight
        room = max(self.opts.max_in_flight, take)  # a full batch fits in flight
        for topic in self.reads():
            self.lanes[topic] = Lanes(self.opts.concurrency, room, self.pipeline.settled,
                                      bind=_bind, batch=take, process_batch=self._batch, on_room=on_room,
                                      ack_prefix=True)  # Rec.ack: it and every earlier record

    async def _batch(self, records: list[Rec]) -> None:
        await settle_all(self.pipeline, records, _same, _bind, self.open_batch)

    def assign(self, topic: str, partition: int, pause: Callable[[str, int, bool], None],
               ack: Callable[[Rec], None]) -> Feed:
        feed = Feed(topic, partition, self.lanes[topic], self.breaker, stage=topic != self.sub.topic,
                    pause=pause, gauge=self.breaker_gauge, high=FEED_HIGH, low=FEED_HIGH // 4, ack=ack)
        self.feeds[(topic, partition)] = feed
        return feed

    def revoke(self, tps: list[tuple[str, int]]) -> None:
        """Close the feeds of ``tps`` (call :meth:`forget` once what was in flight finished)."""
        for tp in tps:
            feed = self.feeds.pop(tp, None)
            if feed is not None:
                feed.close()

    def forget(self, partitions: set[int]) -> None:
        """Partitions gone: their table contents are another worker's now."""
        self.inbox.forget(partitions)
        for table in (self.inbox_table, self.parked_table):  # also an inbox kept here only
            table.drop(partitions)

    async def drop(self, tps: list[tuple[str, int]]) -> None:
        """Forget the queued records of ``tps`` and wait for the ones being handled."""
        for topic, partition in tps:
            lanes = self.lanes.get(topic)
            if lanes is not None:
                await lanes.drop(topic, partition)

    async def stop(self) -> None:
        for lanes in self.lanes.values():
            await lanes.stop()


def _bind(record: Rec) -> None:
    bind(record.partition)


def _same(record: Rec) -> Rec:
    return record
