"""`relay demo`: see relay/demo.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer

from relay.cli.common import JSON_OPTION, emit_json, handles_errors, say, settings
from relay.extras import require


@handles_errors
def demo(
    orders: Optional[int] = typer.Option(None, min=1, help="orders to place (default 10,000); each emits 2 events "
                                         "(OrderPlaced by a writer, OrderConfirmed by the consumer). With --saga: "
                                         "order sagas to run (default 1,000)"),
    writers: Optional[int] = typer.Option(None, min=1, max=64, help="concurrent writer connections (default 24; "
                                          "--saga: 8)"),
    duplicates: int = typer.Option(10, min=0, help="events re-sent by an independent producer"),
    warmup: int = typer.Option(3_000, min=0, help="orders placed and handled first, not counted: the first "
                                                 "seconds on a just-started stack run ~25 % slower"),
    timeout: float = typer.Option(120.0, help="seconds to wait for consumption (--saga: for every run to end)"),
    saga: bool = typer.Option(False, "--saga", help="the saga demo instead: the order saga (charge -> reserve -> "
                                                    "ship, some shipments refused) and incident triage"),
    failing: float = typer.Option(0.2, "--failing", min=0.0, max=1.0, help="--saga: the fraction of orders whose "
                                                                           "shipping fails (they are compensated)"),
    incidents: int = typer.Option(20, "--incidents", min=0, help="--saga: incident-triage runs (half approved "
                                                                 "early, the rest at the gate, every 4th denied)"),
    kill_every: float = typer.Option(0.0, "--kill-every", min=0.0, help="--saga: SIGKILL and restart the "
                                     "coordinator every so many seconds until every run ended (and the "
                                     "participants once); 0: no kills"),
    worker_env: Optional[Path] = typer.Option(None, "--worker-env", exists=True, dir_okay=False, help="a file of "
                                              "RELAY_*=value lines for the worker only, e.g. the Kafka user it acts "
                                              "as (the stack's sasl_ssl profile writes security/<user>.env)"),
    json_out: bool = JSON_OPTION,
) -> None:
    """Commit orders with their outbox events, consume them with `relay worker orders`, print a summary.

    Exit 0 only if every committed event was handled exactly once, in per-order commit order.
    With --saga: exit 0 only if every saga run ended where it should, each effect exactly once.
    """
    require("worker", by="relay demo")  # it runs `relay worker`
    if saga:
        from relay.demo_saga import run_saga_demo

        summary: Any = run_saga_demo(settings(), orders_n=orders or 1_000, failing_fraction=failing,
                                     incidents=incidents, writers=writers or 8,
                                     kill_every_s=kill_every, timeout_s=max(timeout, 300.0) if kill_every else timeout,
                                     progress=say)
    else:
        from relay.demo import run_demo
        from relay.documents import read_env_file

        summary = run_demo(settings(), orders=orders or 10_000, writers=writers or 24, duplicates=duplicates,
                           timeout_s=timeout, progress=say, warmup=warmup,
                           worker_env=read_env_file(worker_env) if worker_env else None)
    if json_out:
        emit_json(summary.as_dict())
    else:
        typer.echo(summary.render())
    sys.exit(0 if summary.ok else 1)
