"""The native stack: ready, idempotent `up`, status JSON that other tools can use."""

import json
import subprocess
import sys

import psycopg
import pytest
from confluent_kafka.admin import AdminClient

pytestmark = pytest.mark.integration


def relay(*args):
    return subprocess.run([sys.executable, "-m", "relay", *args], capture_output=True, text=True, timeout=120)


def test_second_up_is_a_no_op(stack):
    pids = {p.name: p.process.pid() for p in stack.parts}
    timings = stack.up()
    assert timings == {"postgres": 0.0, "kafka": 0.0, "connect": 0.0}
    assert {p.name: p.process.pid() for p in stack.parts} == pids


def test_status_json_gives_addresses_other_tools_can_use(stack, settings):
    out = relay("stack", "status", "--json")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert {name: s["state"] for name, s in status.items()} == {"postgres": "ready", "kafka": "ready",
                                                                "connect": "ready"}
    # the address shows **** for the password: a tool adds the password it holds
    assert ":****@" in status["postgres"]["address"]
    assert f":{settings.pg_password.get_secret_value()}@" not in out.stdout
    with psycopg.connect(status["postgres"]["address"], password=settings.pg_password.get_secret_value()) as conn:
        assert conn.execute("SHOW wal_level").fetchone()[0] == "logical"
    meta = AdminClient({"bootstrap.servers": status["kafka"]["address"]}).list_topics(timeout=10)
    assert meta.brokers
    import urllib.request

    with urllib.request.urlopen(status["connect"]["address"] + "/connector-plugins") as resp:
        classes = {p["class"] for p in json.load(resp)}
    assert "io.debezium.connector.postgresql.PostgresConnector" in classes


def test_broker_auto_creation_is_off(stack, settings, unique):
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "message.timeout.ms": 3000})
    producer.produce(f"no-such-topic-{unique}", b"x")
    producer.flush(5)
    assert f"no-such-topic-{unique}" not in AdminClient(
        {"bootstrap.servers": settings.bootstrap_servers}).list_topics(timeout=10).topics


def test_cdc_role_is_least_privilege(stack, settings):
    dsn = (f"postgresql://{settings.pg_cdc_user}:{settings.pg_cdc_password.get_secret_value()}@{settings.host}:{settings.pg_port}/"
           f"{settings.pg_database}")
    with psycopg.connect(dsn) as conn:
        rolsuper, rolrepl = conn.execute(
            "SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = current_user").fetchone()
        assert (rolsuper, rolrepl) == (False, True)
        conn.execute("SELECT count(*) FROM outbox")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO outbox (id, aggregatetype, aggregateid, type) "
                         "VALUES (gen_random_uuid(), 'x', 'y', 'z')")
