"""`relay worker <consumer>`: run a relay.Consumer on Faust until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
from typing import Optional

import typer

from relay.cli.common import handles_errors, say, settings


@handles_errors
def worker(
    target: str = typer.Argument(..., metavar="CONSUMER",
                                 help="module:attribute of a relay.Consumer (or of a function of Settings "
                                      "returning one), or a name registered under the relay.consumers "
                                      "entry points, e.g. orders"),
    store: Optional[str] = typer.Option(None, help="table store: memory or rocksdb (default: the consumer's)"),
    loglevel: str = typer.Option("warning", help="faust log level"),
) -> None:
    """Run a consumer's subscriptions until stopped (SIGTERM/SIGINT); metrics on RELAY_WORKER_METRICS_PORT.
    Exits 1 with one line within a few seconds when Kafka or the consumer's database does not
    answer (relay.consume._faust.preflight)."""
    from relay.extras import require

    require("worker", by="relay worker")
    s = settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from relay.consume._faust.worker import build_app
    from relay.consume.loader import load_consumer

    app = build_app(load_consumer(target, s), s, store=store)
    from relay.consume._faust.preflight import check

    check(s, app)
    topics = app.relay_topics
    if topics:  # source, retry stages, dead letters: declared (auto-creation is off)
        from relay.topics import apply_topics

        apply_topics(s, topics)
    metrics = app.relay_metrics
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
