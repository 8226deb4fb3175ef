"""Quiet, fast failure against the real stack: a dependency that is down or refuses our
credentials is one clear line (exit 1, no traceback, no client log flood, password never shown),
and `relay outbox stats` says which dependency it is; a paused connector with waiting rows is a
problem, not `ok`.

"Down" is simulated by pointing one setting at a closed loopback port (the shared stack keeps
running for the other tests); the time bound only guards against hangs, the figure is printed.
"""

import json
import os
import socket
import subprocess
import sys
import time
import uuid

import psycopg
import pytest

import relay.outbox
from relay.connect import ConnectClient

pytestmark = pytest.mark.integration

def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CLOSED = closed_port()
BROKEN = {
    "kafka": {"RELAY_KAFKA_BOOTSTRAP": f"127.0.0.1:{CLOSED}"},
    "postgres": {"RELAY_PG_PORT": str(CLOSED)},
    "password": {"RELAY_PG_PASSWORD": "wrong-Pa55"},
    "connect": {"RELAY_CONNECT_URL": f"http://127.0.0.1:{CLOSED}"},
}
EXPECTED = {"kafka": f"Kafka at 127.0.0.1:{CLOSED} unreachable", "postgres": "unreachable",
            "password": "password authentication failed",
            "connect": f"Kafka Connect at http://127.0.0.1:{CLOSED} unreachable"}


def run(env, *args):
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "relay", *args], capture_output=True, text=True, timeout=60,
                         env={**os.environ, **env})
    return out, time.monotonic() - t0


@pytest.mark.parametrize("broken, verb", [
    ("kafka", ("topics", "apply")), ("kafka", ("dlq", "list")), ("kafka", ("worker", "orders")),
    ("postgres", ("outbox", "migrate")), ("postgres", ("outbox", "prune", "--older-than", "7d")),
    ("postgres", ("worker", "orders")), ("password", ("outbox", "migrate")), ("password", ("worker", "orders")),
    ("connect", ("connectors", "status")), ("connect", ("outbox", "blocked")),
])
def test_one_clear_line_and_exit_1(stack, broken, verb):
    out, took = run(BROKEN[broken], *verb)
    print(f"relay {' '.join(verb)} with {broken} broken: rc {out.returncode} in {took:.1f} s")
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 1, out.stderr
    assert len(lines) == 1 and lines[0].startswith("error"), out.stderr
    assert EXPECTED[broken] in lines[0]
    assert "wrong-Pa55" not in out.stdout + out.stderr
    assert took < 20


@pytest.mark.parametrize("broken", ["kafka", "postgres", "password", "connect"])
def test_stats_names_the_dependency_that_is_down(stack, broken):
    out, took = run(BROKEN[broken], "outbox", "stats", "--json")
    print(f"stats with {broken} broken: rc {out.returncode} in {took:.1f} s")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    health = json.loads(out.stdout)
    codes = [p["code"] for p in health["problems"]]
    dependency = {"password": "postgres"}.get(broken, broken)
    assert f"{dependency}_unreachable" in codes, codes
    assert EXPECTED[broken] in health["down"][dependency]
    assert "wrong-Pa55" not in out.stdout + out.stderr
    assert took < 20


def test_paused_connector_with_waiting_rows_is_a_problem(stack, settings, unique):
    client = ConnectClient(settings.connect_rest_url)
    client.pause(settings.connector_name)
    try:
        client.wait_paused(settings.connector_name, 60)
        with psycopg.connect(settings.dsn) as conn, conn.transaction():
            relay.outbox.write(conn, aggregatetype=f"p{unique}", aggregateid="a", type="T", payload={},
                               event_id=uuid.uuid4())
        out, _ = run({}, "outbox", "stats", "--json")
        health = json.loads(out.stdout)
        assert out.returncode == 1
        assert [p["code"] for p in health["problems"]] == ["connector_paused"], health["problems"]
        assert health["outbox"]["backlog_rows"] >= 1
    finally:
        resumed, _ = run({}, "connectors", "resume")
        assert resumed.returncode == 0, resumed.stderr
