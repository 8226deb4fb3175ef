"""`relay dlq list|show|replay`: inspect dead letters and send them back to their topic."""

from __future__ import annotations

import typer

from relay.cli.common import JSON_OPTION, emit_json, handles_errors, say, settings
from relay.errors import RelayError
from relay.handling.dlq import dlq_topics, read_dead_letters, replay as run_replay

app = typer.Typer(help="Dead-letter topics (<topic>.dlq).", no_args_is_help=True)
TOPIC = typer.Option(None, "--topic", help="a dead-letter topic, or its source topic (default: every *.dlq)")
ID = typer.Option(None, "--id", help="only the dead letter of this event id")


def _topics(topic: str | None) -> list[str]:
    s = settings()
    if topic is None:
        return dlq_topics(s)
    return [topic if topic.endswith(".dlq") else f"{topic}.dlq"]


def _select(topic: str | None, event_id: str | None):
    letters = read_dead_letters(settings(), _topics(topic))
    if event_id is not None:
        letters = [d for d in letters if d.event_id == event_id]
        if not letters:
            raise RelayError(f"no dead letter with id {event_id!r} in {', '.join(_topics(topic)) or 'any *.dlq topic'}")
    return letters


@app.command("list")
@handles_errors
def list_(topic: str = TOPIC, json_out: bool = JSON_OPTION) -> None:
    """Every dead letter: where it came from, why it died, after how many attempts."""
    letters = _select(topic, None)
    if json_out:
        emit_json([d.summary() for d in letters])
        return
    for d in letters:
        s = d.summary()
        typer.echo(f"{s['dlq']}  id={s['id']} key={s['key']} from {s['original']} "
                   f"after {s['attempts']} attempt(s): {s['error_class']}: {s['error']}")
    say(f"{len(letters)} dead letter(s)")


@app.command()
@handles_errors
def show(event_id: str = typer.Option(..., "--id"), topic: str = TOPIC, json_out: bool = JSON_OPTION) -> None:
    """One dead letter in full: key, value, every header."""
    letters = _select(topic, event_id)
    if json_out:
        emit_json([d.as_dict() for d in letters])
        return
    for d in letters:
        data = d.as_dict()
        typer.echo(f"{d.dlq_topic}/{d.partition}@{d.offset} key={data['key']}")
        for k, v in data["headers"].items():
            typer.echo(f"  {k}: {v}")
        typer.echo(f"  value: {data['value']}")


@app.command()
@handles_errors
def replay(topic: str = TOPIC, event_id: str = ID,
           all_: bool = typer.Option(False, "--all", help="replay every dead letter of the topic(s)"),
           json_out: bool = JSON_OPTION) -> None:
    """Send dead letters back to their original topic with their key and headers (+ dlq.replays)."""
    if event_id is None and not all_:
        raise RelayError("say which: --id <event id>, or --all")
    letters = _select(topic, event_id)
    count = run_replay(settings(), letters)
    if json_out:
        emit_json({"replayed": count, "ids": [d.event_id for d in letters]})
    else:
        say(f"replayed {count} dead letter(s)")
