"""`relay worker <consumer>`: run a relay.Consumer (on Faust or on confluent-kafka) until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Optional

import typer

from relay.cli.common import handles_errors, say, settings

if TYPE_CHECKING:
    from relay.config import Settings


@handles_errors
def worker(
    target: str = typer.Argument(..., metavar="CONSUMER",
                                 help="module:attribute of a relay.Consumer (or of a function of Settings "
                                      "returning one), or a name registered under the relay.consumers "
                                      "entry points, e.g. orders"),
    store: Optional[str] = typer.Option(None, help="table store: memory or rocksdb (default: the consumer's)"),
    loglevel: str = typer.Option("warning", help="faust log level"),
    engine: Optional[str] = typer.Option(None, help="faust or kafka (default: RELAY_CONSUMER_ENGINE)"),
) -> None:
    """Run a consumer's subscriptions until stopped (SIGTERM/SIGINT); metrics on RELAY_WORKER_METRICS_PORT.
    Exits 1 with one line within a few seconds when Kafka or the consumer's database does not
    answer (relay.consume.preflight)."""
    from relay.extras import require

    require("worker", by="relay worker")
    s = settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from relay.consume.loader import load_consumer

    if engine not in (None, "faust", "kafka"):
        from relay.errors import ConfigError

        raise ConfigError([f"--engine: {engine!r}; expected 'faust' or 'kafka'"])
    if engine is not None:  # the engine decides some defaults (Settings.batch_size)
        s = s.model_copy(update={"consumer_engine": engine})
    consumer = load_consumer(target, s)
    if s.consumer_engine == "kafka":
        if (store or consumer.store) != "memory":
            say(f"store {store or consumer.store!r} is a Faust-engine store; the kafka engine keeps its tables in "
                "memory and rebuilds them from their changelogs (RELAY_CONSUMER_ENGINE=faust to use it)")
        _run_kafka(consumer, s)
        return
    from relay.consume._faust.worker import build_app

    app = build_app(consumer, s, store=store)
    _prepare(s, app, app.relay_topics)
    if app.relay_metrics is not None:  # /readyz: Faust starts its agents from here on
        app.relay_metrics.readiness.mark_ready()
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


def _prepare(s: Settings, app: Any, topics: list[str], configs: dict[str, dict[str, str]] | None = None) -> None:
    """Check Kafka and the databases, declare the topics, serve the metrics."""
    from relay.consume.preflight import check

    check(s, app)
    if topics:  # source, retry stages, dead letters (and changelogs): declared (auto-creation is off)
        from relay.topics import apply_topics

        apply_topics(s, topics, configs=configs)
    metrics = app.relay_metrics
    if metrics is not None and s.worker_metrics_port:
        metrics.serve(s.host, s.worker_metrics_port)
        say(f"metrics on http://{s.host}:{s.worker_metrics_port}/metrics")


def _run_kafka(consumer: Any, s: Settings) -> None:
    from relay.consume._kafka.worker import KafkaWorker
    from relay.kafka_logs import quiet_kafka_clients

    worker = KafkaWorker(consumer, s)
    _prepare(s, worker, worker.relay_topics, worker.changelogs)
    quiet_kafka_clients()
    code = worker.run()
    if code:
        raise typer.Exit(code)
