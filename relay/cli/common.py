"""Shared CLI plumbing: settings, JSON output, and turning our errors into exit codes."""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable

import psycopg
import typer

from relay.config import Settings, load_settings
from relay.errors import ConfigError, RelayError

JSON_OPTION = typer.Option(False, "--json", help="print machine-readable JSON")


def settings() -> Settings:
    return load_settings()


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def say(message: str) -> None:
    typer.echo(message, err=True)


def handles_errors(fn: Callable) -> Callable:
    """Exit 2 on bad settings, 1 on any other RelayError (or a Postgres connection failure that
    escaped translation), with the message only (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            typer.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except RelayError as exc:
            hint = " (retriable)" if exc.retriable else ""
            typer.echo(f"error{hint}: {exc}", err=True)
            sys.exit(1)
        except psycopg.OperationalError as exc:  # a connection path not yet translated at its boundary
            first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            typer.echo(f"error (retriable): Postgres: {first}", err=True)
            sys.exit(1)

    return wrapper


def json_object(text: str, option: str = "--input") -> dict[str, Any]:
    """An option's JSON object, or a RelayError naming the option, the value and what was expected."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RelayError(f"{option} = {text[:80]!r}: not JSON ({exc.msg}); expected a JSON object") from None
    if not isinstance(data, dict):
        raise RelayError(f"{option} = {text[:80]!r}; expected a JSON object")
    return data
