"""Prometheus metrics of a worker. Created per app on a registry (nothing at import time).

``serve`` exposes a registry with Kubernetes' probes beside it (relay.health); every served
object has its own :class:`Readiness` (``metrics.readiness``), not ready until told.
"""

from __future__ import annotations

from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from relay.health import HEALTH_PATH, READY_PATH, Readiness, health_app, start_server

__all__ = ["HEALTH_PATH", "READY_PATH", "ConsumerMetrics", "HealthMetrics", "PollerMetrics", "Readiness"]

class _Served:
    registry: CollectorRegistry

    @property
    def readiness(self) -> Readiness:
        """What ``/readyz`` reports for this process (created on first use)."""
        found: Readiness | None = self.__dict__.get("_readiness")
        if found is None:
            found = self.__dict__["_readiness"] = Readiness()
        return found

    def serve(self, host: str, port: int) -> WSGIServer | None:
        """Expose this registry on http://host:port/metrics, with /healthz and /readyz (port 0: not
        at all; None). A port in use is a ConfigError naming it (not a traceback)."""
        if not port:
            return None
        try:
            return start_server(health_app(make_wsgi_app(self.registry), self.readiness), host, port)
        except OSError as exc:
            from relay.errors import ConfigError

            raise ConfigError([f"metrics port {host}:{port}: {exc.strerror or exc}; expected a free port "
                               "(RELAY_*_METRICS_PORT), or 0 to serve no metrics"]) from None


@dataclass
class ConsumerMetrics(_Served):
    registry: CollectorRegistry
    handled: Counter
    duplicates: Counter
    dead_lettered: Counter
    handler_errors: Counter
    handler_latency: Histogram
    retries: Counter
    parked_keys: Gauge
    recovered: Counter
    ignored: Counter
    batch_records: Histogram
    unstalled: Counter
    lag: Gauge
    breaker_state: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> "ConsumerMetrics":
        reg = registry or CollectorRegistry()
        return cls(
            registry=reg,
            handled=Counter("relay_events_handled_total", "events handled (handler returned)",
                            ["topic"], registry=reg),
            duplicates=Counter("relay_inbox_duplicates_total", "deliveries skipped by the inbox",
                               ["topic"], registry=reg),
            dead_lettered=Counter("relay_dead_lettered_total", "records sent to the dead-letter topic",
                                  ["topic", "reason"], registry=reg),
            handler_errors=Counter("relay_handler_errors_total", "handler exceptions",
                                   ["topic", "retriable"], registry=reg),
            handler_latency=Histogram("relay_handler_seconds", "handler run time (a batch handler: one per call)",
                                      ["topic"], registry=reg,
                                      buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5)),
            retries=Counter("relay_retries_total", "records sent to a retry stage", ["topic", "stage"],
                            registry=reg),
            parked_keys=Gauge("relay_parked_keys", "keys whose events wait behind a retry", registry=reg),
            recovered=Counter("relay_skipped_records_recovered_total",
                              "records Faust did not hand over (offset hole) that were read and handled",
                              ["topic"], registry=reg),
            ignored=Counter("relay_events_ignored_total", "events of types this consumer does not handle",
                            ["topic"], registry=reg),
            unstalled=Counter("relay_partitions_unstalled_total", "source partitions Faust fetched past without "
                              "handing the records over, sought back by the watchdog", ["topic"], registry=reg),
            batch_records=Histogram("relay_batch_records", "records committed per Postgres-inbox transaction",
                                    ["topic"], registry=reg, buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)),
            breaker_state=Gauge("relay_circuit_state", "handler circuit: 0 closed, 1 open, 2 half-open",
                                ["topic"], registry=reg),
            lag=Gauge("relay_consumer_lag", "records behind the high watermark after the last handled one",
                      ["topic", "partition"], registry=reg),
        )


@dataclass
class PollerMetrics(_Served):
    registry: CollectorRegistry
    published: Counter
    failed: Counter
    terminal: Counter
    batches: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> "PollerMetrics":
        reg = registry or CollectorRegistry()
        return cls(
            registry=reg,
            published=Counter("relay_poller_published_total", "outbox rows published and marked", registry=reg),
            failed=Counter("relay_poller_publish_failures_total", "failed publish attempts", registry=reg),
            terminal=Counter("relay_poller_terminal_total", "rows that reached the terminal failed state",
                             registry=reg),
            batches=Counter("relay_poller_batches_total", "non-empty batches", registry=reg),
        )

    def observe(self, result) -> None:
        self.batches.inc()
        self.published.inc(result.published)
        self.failed.inc(result.failed)
        self.terminal.inc(result.terminal)


@dataclass
class HealthMetrics(_Served):
    """Gauges of `relay outbox stats --serve` (the slot guardian)."""

    registry: CollectorRegistry
    gauges: dict

    NAMES = {
        "unpublished_rows": "rows not yet in Kafka: after the connector's position (CDC) or unmarked (poller)",
        "oldest_unpublished_age_seconds": "age of the oldest of those rows",
        "terminal_rows": "rows the polling relay gave up on",
        "rows_after_cdc_position": "rows created after the connector's stored position",
        "cdc_position_age_seconds": "seconds since the commit of the connector's stored position",
        "slot_retained_wal_bytes": "WAL the replication slot pins",
        "slot_active": "1 while Debezium streams from the slot",
        "slot_healthy": "1 while the slot exists with wal_status reserved/extended",
        "connector_running": "1 while connector and tasks are RUNNING",
        "problems": "problems found (see `relay outbox stats`)",
    }

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> "HealthMetrics":
        reg = registry or CollectorRegistry()
        return cls(reg, {n: Gauge(f"relay_outbox_{n}", doc, registry=reg) for n, doc in cls.NAMES.items()})

    def update(self, health) -> None:
        import time as _time

        o, slot, g = health.outbox, health.slot, self.gauges
        g["unpublished_rows"].set(o.get("backlog_rows") or 0)
        g["oldest_unpublished_age_seconds"].set(o.get("backlog_oldest_age_s") or 0)
        g["terminal_rows"].set(o.get("terminal_rows") or 0)
        g["rows_after_cdc_position"].set(o.get("rows_after_cdc_position") or 0)
        g["cdc_position_age_seconds"].set(
            _time.time() - health.position.committed_at.timestamp() if health.position else 0)
        g["slot_retained_wal_bytes"].set(slot.retained_bytes or 0 if slot else 0)
        g["slot_active"].set(int(bool(slot and slot.active)))
        g["slot_healthy"].set(int(bool(slot and slot.healthy)))
        running = bool(health.connector) and health.connector["connector"]["state"] == "RUNNING" and all(
            t["state"] == "RUNNING" for t in health.connector.get("tasks", []))
        g["connector_running"].set(int(running))
        g["problems"].set(len(health.problems))
