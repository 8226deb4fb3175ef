"""`relay topics apply`."""

from __future__ import annotations

import typer

from relay.cli.common import JSON_OPTION, emit_json, handles_errors, say, settings
from relay.headers import dlq_topic
from relay.topics import apply_topics, declared_topics

app = typer.Typer(help="Declared Kafka topics.", no_args_is_help=True)


@app.command()
@handles_errors
def apply(json_out: bool = JSON_OPTION) -> None:
    """Create the declared outbox.event.<type> topics and their .dlq topics (existing ones are kept)."""
    s = settings()
    events = declared_topics(s)
    result = apply_topics(s, events + [dlq_topic(t) for t in events])
    if json_out:
        emit_json(result)
    else:
        for topic, state in result.items():
            say(f"{topic}: {state}")
