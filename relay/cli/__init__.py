"""`relay`: the one CLI for operators (`relay --help` lists the verbs; the README explains them).

The script is installed with the core package; :func:`main` checks the [cli] extra before importing
any command, and `relay worker`, `stack`, `demo` and `bench` check their own extras when they run.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from relay.errors import MissingExtra
from relay.extras import require

if TYPE_CHECKING:
    import typer


def build() -> typer.Typer:
    import typer

    from relay.cli import acls, connectors, dlq, effects, outbox, policy, saga, schemas, stack, topics
    from relay.cli.worker import worker

    cli = typer.Typer(help="outbox-relay: transactional outbox -> Debezium/Kafka -> idempotent consumers.",
                      no_args_is_help=True, pretty_exceptions_enable=False)
    cli.add_typer(stack.app, name="stack")
    cli.add_typer(outbox.app, name="outbox")
    cli.add_typer(connectors.app, name="connectors")
    cli.add_typer(topics.app, name="topics")
    cli.add_typer(schemas.app, name="schemas")
    cli.add_typer(dlq.app, name="dlq")
    cli.add_typer(saga.app, name="saga")
    cli.add_typer(policy.app, name="policy")
    cli.add_typer(effects.app, name="effects")
    cli.add_typer(acls.app, name="acls")
    cli.command("worker")(worker)
    from relay.cli.demo import demo

    cli.command("demo")(demo)
    from relay.cli.bench import bench

    cli.command("bench")(bench)
    return cli


def main() -> None:
    try:
        require("cli", by="the relay command")
    except MissingExtra as exc:
        sys.exit(f"error: {exc}")
    build()()
