"""`relay demo`: see relay/demo.py."""

from __future__ import annotations

import sys

import typer

from relay.cli.common import JSON_OPTION, emit_json, handles_errors, say, settings
from relay.extras import require


@handles_errors
def demo(
    orders: int = typer.Option(10_000, min=1, help="orders to place; each emits 2 events (OrderPlaced by a "
                                                   "writer, OrderConfirmed by the consumer)"),
    writers: int = typer.Option(24, min=1, max=64, help="concurrent writer connections"),
    duplicates: int = typer.Option(10, min=0, help="events re-sent by an independent producer"),
    warmup: int = typer.Option(3_000, min=0, help="orders placed and handled first, not counted: the first "
                                                 "seconds on a just-started stack run ~25 % slower"),
    timeout: float = typer.Option(120.0, help="seconds to wait for consumption"),
    json_out: bool = JSON_OPTION,
) -> None:
    """Commit orders with their outbox events, consume them with `relay worker orders`, print a summary.

    Exit 0 only if every committed event was handled exactly once, in per-order commit order.
    """
    require("worker", by="relay demo")  # it runs `relay worker orders`
    from relay.demo import run_demo

    summary = run_demo(settings(), orders=orders, writers=writers, duplicates=duplicates,
                       timeout_s=timeout, progress=say, warmup=warmup)
    if json_out:
        emit_json(summary.as_dict())
    else:
        typer.echo(summary.render())
    sys.exit(0 if summary.ok else 1)
