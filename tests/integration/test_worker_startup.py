"""`relay worker` checks its dependencies before it starts: with Kafka unreachable, or the
database of a Postgres-inbox handler refusing the password or unreachable, it exits 1 within a
few seconds with one line naming the dependency (password shown as ****), no traceback, and no
librdkafka lines."""

import os
import socket
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.integration


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_worker(**env: str) -> tuple[int, float, list[str]]:
    """`relay worker orders` with ``env``: exit code, seconds, non-empty output lines."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "relay", "worker", "orders"], capture_output=True, text=True,
                          check=False, timeout=60, env={**os.environ, "RELAY_WORKER_METRICS_PORT": "0", **env})
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return done.returncode, time.monotonic() - started, lines


def test_kafka_unreachable_is_one_line_within_seconds(stack):
    port = closed_port()
    rc, seconds, lines = run_worker(RELAY_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}")
    assert rc == 1 and seconds < 8, (rc, seconds, lines[-3:])
    want = (f"error (retriable): Kafka at 127.0.0.1:{port} unreachable: "
            "Failed to get metadata: Local: Broker transport failure")
    assert lines == [want], lines[:5]


def test_wrong_database_password_says_authentication_failed_without_the_password(stack, settings):
    dsn = f"postgresql://{settings.pg_user}:not-the-pw@{settings.host}:{settings.pg_port}/{settings.pg_database}"
    rc, seconds, lines = run_worker(RELAY_PG_DSN=dsn)
    assert rc == 1 and seconds < 8, (rc, seconds, lines[-3:])
    assert len(lines) == 1 and lines[0].startswith("error: Postgres "), lines[:5]
    assert "authentication failed" in lines[0] and "****@" in lines[0] and "not-the-pw" not in lines[0]


def test_unreachable_database_says_unreachable(stack, settings):
    dsn = f"postgresql://{settings.pg_user}:sec-ret@127.0.0.1:{closed_port()}/{settings.pg_database}"
    rc, seconds, lines = run_worker(RELAY_PG_DSN=dsn)
    assert rc == 1 and seconds < 8, (rc, seconds, lines[-3:])
    assert len(lines) == 1 and lines[0].startswith("error (retriable): Postgres at "), lines[:5]
    assert "unreachable" in lines[0] and "sec-ret" not in lines[0]
