"""The SASL_SSL + ACL profile on the real stack (RELAY_STACK_SECURITY=sasl_ssl).

A second native stack of its own (other ports, a temporary stack dir) whose broker listens only
in SASL_SSL with a CA the stack made, SCRAM users created through Kafka's admin API and
StandardAuthorizer ACLs (nothing allowed without one). The demo runs through it with
least-privilege users: Connect as ``connect``, the worker as ``relay-orders`` (relay.security.acls),
the operator's commands as ``admin``. Users without an ACL, or with a wrong password, get a clear
error naming what they lacked, within seconds.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from relay.config import load_settings
from relay.documents import read_env_file
from relay.security.acls import GROUP, worker_acls
from relay.security.kafka_admin import create_acls, upsert_users
from relay.stack.postgres import PostgresPart
from relay.stack.secure import SecureProfile
from relay.topics import client_config

pytestmark = pytest.mark.integration
TOPIC = "outbox.event.order"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _relay(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "relay", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    base = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env = {**base, "RELAY_STACK_DIR": str(tmp_path_factory.mktemp("secure-stack")), "RELAY_STACK_SECURITY": "sasl_ssl",
           "RELAY_PG_PORT": str(_free_port()), "RELAY_KAFKA_PORT": str(_free_port()),
           "RELAY_KAFKA_CONTROLLER_PORT": str(_free_port()), "RELAY_CONNECT_PORT": str(_free_port()),
           "RELAY_WORKER_METRICS_PORT": str(_free_port())}
    up = _relay(env, "stack", "up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        profile = SecureProfile(load_settings(env))
        admin_env = {**env, **read_env_file(profile.dir / "admin.env")}
        for step in (("outbox", "migrate"), ("connectors", "apply")):
            done = _relay(admin_env, *step)
            assert done.returncode == 0, done.stdout + done.stderr
        yield env, admin_env, profile
    finally:
        down = _relay(env, "stack", "down")
        assert down.returncode == 0, down.stdout + down.stderr


def _as(profile: SecureProfile, env: dict[str, str], user: str) -> dict[str, str]:
    return {**env, **read_env_file(profile.env_file(user))}


def test_the_demo_runs_through_sasl_ssl_with_least_privilege_users(secure):
    env, admin_env, profile = secure
    out = _relay(admin_env, "demo", "--orders", "300", "--warmup", "100", "--duplicates", "5", "--json",
                 "--worker-env", str(profile.env_file("relay-orders")))
    assert out.returncode == 0, out.stdout + out.stderr
    s = json.loads(out.stdout)
    assert s["ok"] is True and s["consumed"] == s["committed"] == 600 and s["order_violations"] == 0
    # Connect acts as `connect`, with its password only by reference
    worker_props = (Path(env["RELAY_STACK_DIR"]) / "connect" / "worker.properties").read_text()
    assert 'username="connect"' in worker_props and profile.password("connect") not in worker_props
    assert "producer.security.protocol=SASL_SSL" in worker_props
    # Postgres over TLS only: Debezium's replication connection is encrypted, a plain one refused
    pg = PostgresPart(load_settings(env))
    with psycopg.connect(pg.superuser_conninfo(pg.settings.pg_database), autocommit=True) as conn:
        rows = conn.execute("SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                            "WHERE a.usename = 'relay_cdc' AND a.backend_type = 'walsender'").fetchall()
        # the Debezium role keeps REPLICATION and SELECT on the outbox tables, nothing more
        role = conn.execute("SELECT rolsuper, rolreplication, rolcreatedb, rolcreaterole FROM pg_roles "
                            "WHERE rolname = 'relay_cdc'").fetchone()
        grants = conn.execute("SELECT DISTINCT privilege_type, table_name FROM information_schema.role_table_grants "
                              "WHERE grantee = 'relay_cdc'", prepare=False).fetchall()
    assert rows and all(ssl for (ssl,) in rows), rows
    assert role == (False, True, False, False)
    assert grants and {p for p, _t in grants} == {"SELECT"} and all(t.startswith("outbox") for _p, t in grants), grants
    plain = load_settings(admin_env).dsn.replace("sslmode=verify-full", "sslmode=disable")
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(plain, connect_timeout=5).close()


def test_each_role_is_refused_what_it_does_not_need(secure):
    """Connect may not read a routed topic; the worker may not write one."""
    env, _admin_env, profile = secure
    s_connect = load_settings(_as(profile, env, "connect"))
    reader = Consumer({**client_config(s_connect), "group.id": "unused", "enable.auto.commit": False})
    try:
        reader.assign([TopicPartition(TOPIC, 0, OFFSET_BEGINNING)])  # no group: only the topic's ACL counts
        seen = _errors_until(reader, KafkaError.TOPIC_AUTHORIZATION_FAILED, 20)
    finally:
        reader.close()
    assert KafkaError.TOPIC_AUTHORIZATION_FAILED in seen, seen

    s_worker = load_settings(_as(profile, env, "relay-orders"))
    failures: list[KafkaError] = []
    producer = Producer({**client_config(s_worker), "message.timeout.ms": 10_000})
    producer.produce(TOPIC, b"x", key=b"k", on_delivery=lambda e, _m: failures.append(e))
    producer.flush(20)
    assert failures and failures[0] is not None
    assert failures[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, failures


def _errors_until(consumer: Consumer, wanted: int, timeout_s: float) -> list[int]:
    """The error codes the consumer reports until ``wanted`` is one (a consumer with a group id
    asks for its coordinator even when it only assigns: a group refusal comes too)."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and wanted not in seen:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is not None:
            seen.append(msg.error().code())
    return seen


def test_an_unauthorized_client_gets_a_clear_error_within_seconds(secure):
    env, admin_env, profile = secure
    admin = load_settings(admin_env)
    upsert_users(admin, {u: profile.password(u) for u in ("nobody", "nogroup")})
    create_acls(admin, [a for a in worker_acls("nogroup", "orders", admin) if a.resource != GROUP])

    t0 = time.monotonic()
    out = _relay(_as(profile, env, "nobody"), "topics", "apply", timeout=60)
    assert out.returncode != 0 and time.monotonic() - t0 < 30
    assert f"does not allow User:nobody to create topic {TOPIC}" in out.stderr, out.stderr

    t0 = time.monotonic()
    out = _relay(_as(profile, env, "nogroup"), "worker", "orders", timeout=60)
    assert out.returncode != 0 and time.monotonic() - t0 < 30
    assert "does not allow User:nogroup to join group relay-orders" in out.stdout + out.stderr, out.stderr

    wrong = {**_as(profile, env, "relay-orders"),
             "RELAY_KAFKA_SASL_PASSWORD_FILE": str(profile.password_file("nobody"))}
    t0 = time.monotonic()
    out = _relay(wrong, "worker", "orders", timeout=60)
    assert out.returncode != 0 and time.monotonic() - t0 < 30
    assert "refused the login of User:relay-orders with SCRAM-SHA-512" in out.stderr, out.stderr


def test_connects_rest_api_asks_for_credentials(secure):
    env, admin_env, _profile = secure
    out = _relay(env, "connectors", "status", timeout=60)
    assert out.returncode != 0 and "asks for credentials" in out.stderr and "HTTP 401" in out.stderr, out.stderr
    wrong = {**admin_env, "RELAY_CONNECT_PASSWORD_FILE": admin_env["RELAY_KAFKA_SASL_PASSWORD_FILE"]}
    out = _relay(wrong, "connectors", "status", timeout=60)
    assert out.returncode != 0 and "refused our credentials" in out.stderr, out.stderr
    out = _relay(admin_env, "connectors", "status", timeout=60)
    assert out.returncode == 0 and "RUNNING" in out.stdout, out.stdout + out.stderr


def test_relay_acls_applies_a_workers_grants_and_refuses_a_user_without_the_right(secure):
    """`relay acls apply` as the admin gives a new user exactly the worker's grants (the worker then
    runs); as a user without Alter on the cluster it says so."""
    env, admin_env, profile = secure
    upsert_users(load_settings(admin_env), {"orders-two": profile.password("orders-two")})
    out = _relay(admin_env, "acls", "apply", "--worker", "orders", "--user", "orders-two", timeout=60)
    assert out.returncode == 0 and "ACL(s) for User:orders-two in place" in out.stderr + out.stdout, out.stderr
    worker = subprocess.Popen([sys.executable, "-m", "relay", "worker", "orders"], env=_as(profile, env, "orders-two"),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(15)
        assert worker.poll() is None, worker.stdout.read() if worker.stdout else ""
    finally:
        worker.terminate()
        worker.wait(30)
    out = _relay(_as(profile, env, "relay-orders"), "acls", "apply", "--connect", "--user", "x", timeout=60)
    assert out.returncode != 0 and "does not allow User:relay-orders to create the ACL" in out.stderr, out.stderr
