"""`relay dlq list|show|replay`: inspect dead letters and send them back to their topic, each once."""

from __future__ import annotations

import signal
import sys
import time

import typer

from relay.cli.common import JSON_OPTION, emit_json, handles_errors, say, settings
from relay.errors import RelayError
from relay.handling.dlq import DeadLetter, dlq_topics
from relay.handling.redrive import progress_line
from relay.handling.redrive_run import RedriveResult, letters_with_status, redrive

app = typer.Typer(help="Dead-letter topics (<topic>.dlq).", no_args_is_help=True)
TOPIC = typer.Option(None, "--topic", help="a dead-letter topic, or its source topic (default: every *.dlq)")
ID = typer.Option(None, "--id", help="only the dead letter(s) of this event id")


def _topics(topic: str | None) -> list[str]:
    """The dead-letter topics meant; asks Kafka first, so an unreachable Kafka fails fast."""
    existing = dlq_topics(settings())
    if topic is None:
        return existing
    name = topic if topic.endswith(".dlq") else f"{topic}.dlq"
    if name not in existing:
        raise RelayError(f"no dead-letter topic {name!r} (there are: {', '.join(existing) or 'none'})")
    return [name]


def _with_status(topic: str | None, event_id: str | None) -> list[tuple[DeadLetter, bool]]:
    topics = _topics(topic)
    letters = letters_with_status(settings(), topics)
    if event_id is not None:
        letters = [(d, done) for d, done in letters if d.event_id == event_id]
        if not letters:
            raise RelayError(f"no dead letter with id {event_id!r} in {', '.join(topics) or 'any *.dlq topic'}")
    return letters


def _summary(d: DeadLetter, replayed: bool) -> dict:
    return {**d.summary(), "replayed": replayed}


@app.command("list")
@handles_errors
def list_(topic: str = TOPIC, json_out: bool = JSON_OPTION) -> None:
    """Every dead letter: where it came from, why it died, after how many attempts and replays,
    and whether it was replayed (the redrive position of its topic is past it)."""
    letters = _with_status(topic, None)
    if json_out:
        emit_json([_summary(d, done) for d, done in letters])
        return
    for d, done in letters:
        s = d.summary()
        typer.echo(f"{s['dlq']}  {'replayed' if done else 'pending '}  id={s['id']} key={s['key']} "
                   f"from {s['original']} after {s['attempts']} attempt(s), {s['replays']} earlier replay(s): "
                   f"{s['error_class']}: {s['error']}")
    pending = sum(1 for _, done in letters if not done)
    say(f"{len(letters)} dead letter(s), {pending} not replayed yet")


@app.command()
@handles_errors
def show(event_id: str = typer.Option(..., "--id"), topic: str = TOPIC, json_out: bool = JSON_OPTION) -> None:
    """One event's dead letter(s) in full: key, value, every header, whether replayed."""
    letters = _with_status(topic, event_id)
    if json_out:
        emit_json([{**d.as_dict(), "replayed": done} for d, done in letters])
        return
    for d, done in letters:
        data = d.as_dict()
        typer.echo(f"{d.dlq_topic}/{d.partition}@{d.offset} key={data['key']} "
                   f"{'replayed' if done else 'not replayed yet'}")
        for k, v in data["headers"].items():
            typer.echo(f"  {k}: {v}")
        typer.echo(f"  value: {data['value']}")


class _Progress:
    """Progress on stderr: one line per committed batch, at most one a second, and the last."""

    def __init__(self, quiet: bool) -> None:
        self.quiet, self.shown = quiet, 0.0

    def __call__(self, topic: str, done: int, total: int, elapsed_s: float) -> None:
        now = time.monotonic()
        if self.quiet or (done < total and now - self.shown < 1.0):
            return
        self.shown = now
        typer.echo(progress_line(topic, done, total, elapsed_s), err=True)


@app.command()
@handles_errors
def replay(topic: str = TOPIC, event_id: str = ID,
           all_: bool = typer.Option(False, "--all", help="every dead letter not replayed yet"),
           force: bool = typer.Option(False, "--force", help="with --id: send it again even if already replayed"),
           rate: float = typer.Option(None, "--rate", min=0.001, help="at most this many records per second"),
           dry_run: bool = typer.Option(False, "--dry-run", help="say what would be replayed; send nothing"),
           json_out: bool = JSON_OPTION) -> None:
    """Send dead letters back to their original topic with their key and headers (+ dlq.replays),
    each once: the redrive position is committed with the records, so a second run sends nothing
    new and an interrupted one resumes where it stopped."""
    if (event_id is None) == (not all_):
        raise RelayError("say which: --id <event id>, or --all (not both)")
    if force and event_id is None:
        raise RelayError("--force goes with --id only (--all never sends a letter twice)")
    results: list[RedriveResult] = []
    progress = _Progress(quiet=dry_run)
    signal.signal(signal.SIGTERM, _interrupt)  # like Ctrl-C: abort the open transaction, then exit
    try:
        for name in _topics(topic):
            results.append(redrive(settings(), name, event_id=event_id, force=force, rate=rate, dry_run=dry_run,
                                   progress=progress))
    except KeyboardInterrupt:
        say("interrupted: what was sent so far is recorded; run the same command again to resume")
        sys.exit(130)
    if event_id is not None and not any(r.replayed or r.already_replayed for r in results):
        searched = ", ".join(r.topic for r in results) or "any *.dlq topic"
        raise RelayError(f"no dead letter with id {event_id!r} in {searched}")
    _report(results, by_id=event_id is not None, dry_run=dry_run, json_out=json_out)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _report(results: list[RedriveResult], *, by_id: bool, dry_run: bool, json_out: bool) -> None:
    sent = [d for r in results for d in r.replayed]
    skipped = [d for r in results for d in r.already_replayed]
    if json_out:
        emit_json({"replayed": len(sent), "dry_run": dry_run, "ids": [d.event_id for d in sent],
                   "already_replayed": len(skipped), "topics": [r.summary() for r in results]})
        return
    verb = "would replay" if dry_run else "replayed"
    if dry_run:
        for d in sent:
            typer.echo(f"{verb} {d.dlq_topic}/{d.partition}@{d.offset} id={d.event_id} -> {d.original_topic}")
    if by_id:
        for d in skipped:
            say(f"skipped {d.dlq_topic}/{d.partition}@{d.offset} id={d.event_id}: already replayed "
                "(--force sends it again)")
    say(f"{verb} {len(sent)} dead letter(s)" + (f", {len(skipped)} already replayed" if skipped else ""))
