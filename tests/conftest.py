"""Shared fixtures. The real native stack for integration and conformance tests: started once per session,
torn down at the end.

If the stack is already up (a developer ran `make demo`), it is reused and left running.
Otherwise it is started here and stopped at the end, and the teardown asserts that no process
it started is still alive.
"""

from __future__ import annotations

import os
import uuid

import psycopg
import pytest

from relay.config import load_settings
from relay.connect import ConnectClient, render_outbox_connector
from relay.outbox import ensure_cdc_access, migrate
from relay.stack import Stack
from relay.topics import apply_topics, declared_topics


@pytest.fixture(scope="session")
def settings():
    return load_settings()


@pytest.fixture(scope="session")
def stack(settings):
    stack = Stack(settings)
    # reuse (and leave running) a stack whose processes exist, even if one is still booting
    was_up = any(part.process.pid() for part in stack.parts)
    stack.up(lambda part, event, t: print(f"[stack {t:5.1f}s] {part} {event}", flush=True))
    with psycopg.connect(settings.dsn) as conn:
        migrate(conn, max_event_bytes=settings.max_event_bytes)
        ensure_cdc_access(conn, publication=settings.publication, cdc_role=settings.pg_cdc_user)
    apply_topics(settings, declared_topics(settings))
    client = ConnectClient(settings.connect_rest_url)
    client.apply(settings.connector_name, render_outbox_connector(settings))
    client.wait_running(settings.connector_name)
    yield stack
    if was_up:
        return
    pids = [p for p in (part.process.pid() for part in stack.parts) if p]
    stack.down()
    alive = [pid for pid in pids if os.path.exists(f"/proc/{pid}") and _not_zombie(pid)]
    assert not alive, f"processes still running after `stack down`: {alive}"


def _not_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def db(stack, settings):
    with psycopg.connect(settings.dsn) as conn:
        yield conn


@pytest.fixture
def unique():
    return uuid.uuid4().hex[:10]


# Both engines run a consumer's pipelines (relay.consume._kafka, relay.consume._faust); a worker
# guarantee test takes `engine` (parametrized indirectly, tests/support/engines.py) and the worker
# subprocesses it starts inherit the engine through the environment.
@pytest.fixture
def engine(request, monkeypatch):
    name = getattr(request, "param", "kafka")
    monkeypatch.setenv("RELAY_CONSUMER_ENGINE", name)
    return name
