"""`relay worker <app>`: run a Faust app from processors/ until SIGTERM/SIGINT."""

from __future__ import annotations

import importlib
import logging

import typer

from relay.cli.common import handles_errors, say, settings
from relay.errors import ConfigError


def _factory(name: str):
    from processors import APPS

    target = APPS.get(name, name)
    if ":" not in target:
        raise ConfigError([f"app {name!r}: unknown; expected one of {sorted(APPS)} or module:function"])
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError([f"app {name!r}: cannot load {target} ({exc})"]) from None


@handles_errors
def worker(
    app_name: str = typer.Argument(..., metavar="APP", help="orders, or module:function(settings)"),
    store: str = typer.Option("memory", help="table store: memory or rocksdb"),
    loglevel: str = typer.Option("warning", help="faust log level"),
) -> None:
    """Run a processor app (idempotent consumers) until stopped; metrics on RELAY_WORKER_METRICS_PORT.
    Exits 1 with one line within a few seconds when Kafka or a database the app declared does not
    answer (relay.consume._faust.preflight)."""
    s = settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = _factory(app_name)(s, store=store)
    from relay.consume._faust.preflight import check

    check(s, app)
    topics = getattr(app, "relay_topics", [])
    if topics:  # source, retry stages, dead letters: declared (auto-creation is off)
        from relay.topics import apply_topics

        apply_topics(s, topics)
    metrics = getattr(app, "relay_metrics", None)
    if metrics is not None and s.worker_metrics_port:
        metrics.serve(s.host, s.worker_metrics_port)
        say(f"metrics on http://{s.host}:{s.worker_metrics_port}/metrics")
    import faust

    import relay.consume._faust.commits  # noqa: F401 - its aiokafka/faust loggers must exist for the filter below
    from relay.kafka_logs import quiet_kafka_clients

    quiet_kafka_clients()  # reconnect floods during a broker outage: one line per shape per window
    runner = faust.Worker(app, loglevel=loglevel, quiet=True)
    # Faust's terminal spinner sets the root logger to DEBUG (at our default level) so that it can
    # spin on every log record: aiokafka then builds a debug record per produced message, ~6 % of
    # a worker's CPU under py-spy, and escape codes land in log files. No spinner.
    runner.spinner = None
    runner.execute_from_commandline()
