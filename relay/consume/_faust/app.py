"""The Faust app factory: no global app, everything derived from Settings.

Choices:
- ``kafka://`` transport (aiokafka >= 0.14 speaks Kafka 4's protocol); never ``confluent://``.
- tables are co-partitioned with the source topics (``topic_partitions`` = ours) and their
  changelogs are compacted; the app id is stable (bumping ``version`` would empty the inbox).
- ``consumer_auto_offset_reset=earliest``: a new consumer group starts at the beginning, so events
  committed before the first worker ran are not skipped.
- web server off (it would serve table contents on 0.0.0.0); metrics come from prometheus-client
  on loopback instead.
- the consumer's commit rule is replaced (relay.consume._faust.commits): Faust's own lets the committed
  offset fall behind on topics with transaction markers, which every Debezium EOS topic has.
- record size: the producer (retry stages, dead letters, changelogs) accepts a record of
  ``Settings.max_record_bytes`` (an event of ``RELAY_MAX_EVENT_BYTES`` plus headers), as the topics
  do, so an event the outbox accepted can always be forwarded or dead-lettered; a fetch holds one.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.types import TransportT

from relay.config import Settings
from relay.kafka_security import faust_credentials, librdkafka

STORES = {"memory": "memory://", "rocksdb": "rocksdb://"}
FETCH_BYTES = 4 * 1024**2  # Faust's default consumer_max_fetch_size (per partition)


class RelayApp(faust.App):
    """faust.App whose consumer transport is relay.consume._faust.commits.Transport, and which
    runs a consumer's lifecycle (relay.consume.runtime) around Faust's own."""

    relay_runtime: Any = None  # relay.consume.runtime.Runtime: started before the agents, stopped after
    relay_metrics: Any = None  # relay.metrics.ConsumerMetrics served by `relay worker`
    relay_topics: list[str]  # every topic the subscriptions read or write (declared before start)
    relay_databases: list[str]  # DSNs checked before start (preflight)
    relay_client_security: dict[str, Any]  # librdkafka keys of our own confluent-kafka clients (the gap reader)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.relay_topics, self.relay_databases, self.relay_client_security = [], [], {}

    def _new_transport(self) -> TransportT:  # a private Faust hook: compat.OVERRIDES
        from relay.consume._faust.commits import Transport

        return Transport(self.conf.broker_consumer, self)

    async def on_start(self) -> None:
        await super().on_start()
        if self.relay_runtime is not None:
            await self.relay_runtime.start()

    async def on_stop(self) -> None:
        await super().on_stop()
        if self.relay_runtime is not None:
            await self.relay_runtime.stop()


def create_app(settings: Settings, app_id: str, *, store: str = "memory") -> RelayApp:
    if store not in STORES:
        raise ValueError(f"store={store!r}: expected one of {sorted(STORES)}")
    datadir = settings.faust_data_dir / app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    app = RelayApp(
        app_id,
        broker=f"kafka://{settings.bootstrap_servers}",
        broker_credentials=faust_credentials(settings),  # TLS / SASL, as every client (relay.kafka_security)
        store=STORES[store],
        datadir=str(datadir),
        autodiscover=False,
        web_enabled=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        producer_max_request_size=settings.max_record_bytes,
        consumer_max_fetch_size=max(FETCH_BYTES, settings.max_record_bytes),
    )
    app.relay_client_security = librdkafka(settings)
    return app
