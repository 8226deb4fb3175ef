"""Prometheus metrics of a worker. Created per app on a registry (nothing at import time)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server


@dataclass
class ConsumerMetrics:
    registry: CollectorRegistry
    handled: Counter
    duplicates: Counter
    dead_lettered: Counter
    handler_errors: Counter
    handler_latency: Histogram

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
            handler_latency=Histogram("relay_handler_seconds", "handler run time", ["topic"],
                                      registry=reg,
                                      buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5)),
        )

    def serve(self, host: str, port: int) -> None:
        if port:
            start_http_server(port, addr=host, registry=self.registry)


@dataclass
class PollerMetrics:
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

    def serve(self, host: str, port: int) -> None:
        if port:
            start_http_server(port, addr=host, registry=self.registry)
