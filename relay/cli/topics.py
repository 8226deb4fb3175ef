"""`relay topics apply`."""

from __future__ import annotations

import typer

from relay.cli.common import JSON_OPTION, emit_json, handles_errors, say, settings
from relay.headers import dlq_topic, retry_topic
from relay.topics import apply_topics, declared_topics, existing_outbox_topics

app = typer.Typer(help="Declared Kafka topics.", no_args_is_help=True)


@app.command()
@handles_errors
def apply(json_out: bool = JSON_OPTION) -> None:
    """Create the declared outbox.event.<type> topics, their retry stages and .dlq (existing ones are
    kept); every outbox.event.* topic gets max.message.bytes for an event of RELAY_MAX_EVENT_BYTES."""
    from relay.handling.retry import RetryPolicy

    s = settings()
    events = declared_topics(s)
    stages = range(1, len(RetryPolicy.parse(s.retry_delays).delays_s) + 1)
    declared = events + [retry_topic(t, n) for t in events for n in stages] + [dlq_topic(t) for t in events]
    result = apply_topics(s, declared + [t for t in existing_outbox_topics(s) if t not in declared])
    if json_out:
        emit_json(result)
    else:
        for topic, state in result.items():
            if state != "exists":
                say(f"{topic}: {state}")
        unchanged = sum(1 for state in result.values() if state == "exists")
        say(f"{unchanged} topic(s) already as declared" if unchanged else "all topics created or updated")
