"""`relay connectors render|validate|apply|status|pause|resume|restart|delete` against the real Kafka Connect.

Lifecycle verbs are exercised on a second connector with its own name, slot, topic prefix and
publication, that captures no table (so it never publishes into the real outbox topics); its slot
and publication are dropped at the end. The real connector (`relay-outbox`) is only applied and
read.
"""

import json
import subprocess
import sys
import time

import psycopg
import pytest
from psycopg import sql

from relay.connect import ConnectClient
from relay.stack import Stack

pytestmark = pytest.mark.integration


def relay(*args):
    return subprocess.run([sys.executable, "-m", "relay", *args], capture_output=True, text=True, timeout=180)


class Outputs:
    """Every command a test ran, so that one assertion can say: the password is in none of them."""

    def __init__(self):
        self.runs = []

    def __call__(self, *args):
        out = relay(*args)
        self.runs.append((args, out))
        return out

    def assert_no_secret(self, secret):
        assert self.runs
        for args, out in self.runs:
            assert secret not in out.stdout + out.stderr, f"password printed by `relay {' '.join(args)}`"


@pytest.fixture
def run():
    return Outputs()


def superuser(settings, dbname=None):
    return psycopg.connect(Stack(settings).postgres.superuser_conninfo(dbname or settings.pg_database),
                           autocommit=True)


def drop_slot(settings, slot, timeout_s=30.0):
    """Drop ``slot`` once no walsender holds it (the task stops asynchronously after DELETE)."""
    deadline = time.monotonic() + timeout_s
    with superuser(settings) as conn:
        while True:
            row = conn.execute("SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = %s",
                               (slot,)).fetchone()
            if row is None:
                return
            if not row[0]:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                return
            assert time.monotonic() < deadline, f"slot {slot} still active (pid {row[1]}) {timeout_s} s after delete"
            time.sleep(0.3)


def slot_exists(settings, slot):
    with superuser(settings) as conn:
        return conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone() is not None


def connect_log(settings):
    return settings.stack_dir / "logs" / "connect.log"


@pytest.fixture
def second(stack, settings, unique):
    """A second Debezium connector's name and --set overrides; deleted, slot and publication dropped after."""
    name, slot, publication = f"relaytest-{unique}", f"relay_test_{unique}", f"relay_test_{unique}"
    sets = []
    for key, value in {
        "slot.name": slot,
        "topic.prefix": f"relaytest-{unique}",
        "publication.name": publication,  # created by the test: until then the task FAILS
        "table.include.list": f"public.relay_test_none_{unique}",  # captures nothing
        "heartbeat.interval.ms": "0",  # no heartbeat topic for this prefix
        "message.prefix.exclude.list": ".*",  # no logical-message topic either
    }.items():
        sets += ["--set", f"{key}={value}"]
    yield {"name": name, "slot": slot, "publication": publication, "sets": sets}
    client = ConnectClient(settings.connect_rest_url)
    client.delete(name)
    drop_slot(settings, slot)
    with superuser(settings) as conn:
        conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(publication)))


def test_apply_twice_second_is_a_no_op(stack, settings, run):
    first = run("connectors", "apply", "--json")
    assert first.returncode == 0, first.stderr
    second = run("connectors", "apply", "--json")
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout)
    assert result["changed"] is False and result["created"] is False
    assert result["status"]["connector"]["state"] == "RUNNING"
    text = run("connectors", "apply")
    assert text.returncode == 0 and "unchanged" in text.stderr
    run.assert_no_secret(settings.pg_cdc_password.get_secret_value())


def test_status_and_render_never_show_the_password(stack, settings, run):
    status = run("connectors", "status", "--json")
    assert status.returncode == 0, status.stderr
    st = json.loads(status.stdout)
    assert st["ok"] is True and st["connector"]["worker_id"]
    task = st["tasks"][0]
    assert task["state"] == "RUNNING" and task["worker_id"] and "trace" in task
    text = run("connectors", "status")
    assert text.returncode == 0 and "task 0: RUNNING on" in text.stdout
    rendered = run("connectors", "render")
    assert json.loads(rendered.stdout)["database.password"].startswith("${file:")
    run.assert_no_secret(settings.pg_cdc_password.get_secret_value())
    live = ConnectClient(settings.connect_rest_url).config(settings.connector_name)
    assert live["database.password"].startswith("${file:")


def test_validate_accepts_the_rendered_config(stack, settings, run):
    out = run("connectors", "validate", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout) == []
    text = run("connectors", "validate")
    assert text.returncode == 0 and "config valid" in text.stdout
    run.assert_no_secret(settings.pg_cdc_password.get_secret_value())


def test_validate_lists_every_problem(stack, settings, run):
    broken = ("--set", "plugin.name=nope", "--set", "slot.name=")
    out = run("connectors", "validate", "--json", *broken)
    assert out.returncode == 1, out.stderr
    problems = {p["key"]: p for p in json.loads(out.stdout)}
    assert {"plugin.name", "slot.name"} <= set(problems)
    assert problems["plugin.name"]["value"] == "nope" and problems["plugin.name"]["errors"]
    assert problems["slot.name"]["value"] == "" and problems["slot.name"]["errors"]
    text = run("connectors", "validate", *broken)
    assert text.returncode == 1
    assert "plugin.name = 'nope'" in text.stdout and "slot.name = ''" in text.stdout
    assert "decoderbufs, pgoutput" in text.stdout  # Connect's own message
    run.assert_no_secret(settings.pg_cdc_password.get_secret_value())


def test_validate_resolves_the_file_provider_and_never_shows_the_secret(stack, settings, run):
    rendered = json.loads(run("connectors", "render").stdout)
    reference = rendered["database.password"]  # ${file:<secrets file>:pg.password}
    secrets_file = reference[len("${file:"):reference.rindex(":")]

    # Connect resolves ${file:...} before validating: Debezium's test connection uses the value.
    # The rendered config passes (above); a reference to a key that is not in the file fails.
    out = run("connectors", "validate", "--json", "--set", f"database.password=${{file:{secrets_file}:no.such.key}}")
    assert out.returncode == 1
    problems = {p["key"]: p for p in json.loads(out.stdout)}
    assert any("password authentication failed" in e for p in problems.values() for e in p["errors"]), problems

    # a resolved value in a key Connect rejects is quoted in Connect's error message: we redact it
    out = run("connectors", "validate", "--json", "--set", f"errors.log.include.messages={reference}")
    assert out.returncode == 1
    (problem,) = [p for p in json.loads(out.stdout) if p["key"] == "errors.log.include.messages"]
    assert problem["value"] == reference  # what we sent, not what it resolves to
    assert "[redacted]" in problem["errors"][0]

    # a file the worker cannot read: Connect answers 500; a clear, non-retriable error
    out = run("connectors", "validate", "--set", "database.password=${file:/nonexistent/secrets.properties:k}")
    assert out.returncode == 1
    assert "/nonexistent/secrets.properties" in out.stderr and "config-provider" in out.stderr
    assert "(retriable)" not in out.stderr
    run.assert_no_secret(settings.pg_cdc_password.get_secret_value())


def test_verbs_on_an_absent_connector(stack, settings, run, unique):
    name = f"relaytest-absent-{unique}"
    status = run("connectors", "status", "--json", "--name", name)
    assert status.returncode == 1 and json.loads(status.stdout)["connector"]["state"] == "ABSENT"
    for verb in ("pause", "resume", "restart"):
        out = run("connectors", verb, "--name", name)
        assert out.returncode == 1 and "not registered" in out.stderr, (verb, out.stderr)
    gone = run("connectors", "delete", "--name", name)
    assert gone.returncode == 0 and "nothing to delete" in gone.stderr
    gone = run("connectors", "delete", "--json", "--name", name)
    assert gone.returncode == 0 and json.loads(gone.stdout)["existed"] is False
    run.assert_no_secret(settings.pg_cdc_password.get_secret_value())


def test_lifecycle_on_a_second_connector(stack, settings, run, second):
    name, sets = second["name"], second["sets"]
    log = connect_log(settings)
    log_start = log.stat().st_size if log.exists() else 0

    # created; its task FAILS (the publication does not exist yet) and apply says why
    created = run("connectors", "apply", "--name", name, *sets, "--timeout", "30")
    assert created.returncode == 1
    assert "Publication autocreation is disabled" in created.stderr
    status = run("connectors", "status", "--json", "--name", name)
    assert status.returncode == 1
    st = json.loads(status.stdout)
    assert st["tasks"][0]["state"] == "FAILED" and st["tasks"][0]["worker_id"]
    assert "Publication autocreation is disabled" in st["tasks"][0]["trace"]

    # restart of the failed task while the cause is still there: still FAILED, exit 1
    out = run("connectors", "restart", "--json", "--name", name)
    assert out.returncode == 1
    result = json.loads(out.stdout)
    assert result["restarted"] == ["task 0"] and result["status"]["tasks"][0]["state"] == "FAILED"

    # fix the cause, restart the failed task: RUNNING
    with superuser(settings) as conn:
        conn.execute(sql.SQL("CREATE PUBLICATION {}").format(sql.Identifier(second["publication"])))
    out = run("connectors", "restart", "--json", "--name", name)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["restarted"] == ["task 0"] and result["status"]["ok"] is True
    assert slot_exists(settings, second["slot"])

    # nothing failed: nothing restarted
    out = run("connectors", "restart", "--json", "--name", name)
    assert out.returncode == 0 and json.loads(out.stdout)["restarted"] == []

    # apply again: no-op
    again = run("connectors", "apply", "--json", "--name", name, *sets)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["changed"] is False

    # pause, pause again (fine), status says PAUSED (exit 1: not running)
    for changed in (True, False):
        out = run("connectors", "pause", "--json", "--name", name)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert result["changed"] is changed
        assert result["status"]["connector"]["state"] == "PAUSED"
        assert [t["state"] for t in result["status"]["tasks"]] == ["PAUSED"]
    status = run("connectors", "status", "--json", "--name", name)
    assert status.returncode == 1 and json.loads(status.stdout)["connector"]["state"] == "PAUSED"

    # resume, resume again (fine)
    for changed in (True, False):
        out = run("connectors", "resume", "--json", "--name", name)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert result["changed"] is changed and result["status"]["ok"] is True

    # restart --all: the connector and its task
    out = run("connectors", "restart", "--all", "--json", "--name", name)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["restarted"] == ["connector", "task 0"] and result["status"]["ok"] is True
    text = run("connectors", "restart", "--all", "--name", name)
    assert text.returncode == 0 and "restarted connector, task 0" in text.stderr

    # delete: says the slot stays and where a re-created connector resumes; the slot does stay
    out = run("connectors", "delete", "--name", name)
    assert out.returncode == 0, out.stderr
    assert f"replication slot '{second['slot']}' stays in Postgres" in out.stderr
    assert "resumes from the offsets" in out.stderr
    assert slot_exists(settings, second["slot"])
    assert name not in ConnectClient(settings.connect_rest_url).connectors()
    out = run("connectors", "delete", "--json", "--name", name)
    assert out.returncode == 0 and json.loads(out.stdout)["existed"] is False

    run.assert_no_secret(settings.pg_cdc_password.get_secret_value())
    if log.exists():
        with log.open("rb") as fh:
            fh.seek(log_start)
            assert settings.pg_cdc_password.get_secret_value().encode() not in fh.read()
