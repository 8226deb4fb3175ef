"""Settings: typed defaults, every problem listed at once, misspelled variables are errors.

Every test goes through the real process environment (``os.environ``, via monkeypatch), as a
user's shell would: an earlier version passed only because the tests handed ``load_settings`` a
dict and never met pydantic-settings' own environment parsing.
"""

import pytest
from pydantic import ValidationError

from relay.config import load_settings
from relay.errors import ConfigError
from relay.secrets import mask_dsn


@pytest.fixture
def env(monkeypatch):
    """Set ``RELAY_*`` variables in the real environment (others of the shell removed first)."""
    import os

    for var in [v for v in os.environ if v.startswith("RELAY_")]:
        monkeypatch.delenv(var)

    def set_(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(key, value)

    return set_


def test_defaults_avoid_standard_ports_and_derive_addresses(env):
    s = load_settings()
    assert {s.pg_port, s.kafka_port, s.connect_port}.isdisjoint({5432, 9092, 8083})
    assert s.dsn == f"postgresql://relay:relay@127.0.0.1:{s.pg_port}/relay"
    assert s.bootstrap_servers == f"127.0.0.1:{s.kafka_port}"
    assert s.connect_rest_url == f"http://127.0.0.1:{s.connect_port}"


def test_explicit_addresses_override_the_native_stack(env):
    env(RELAY_KAFKA_BOOTSTRAP="k:1", RELAY_PG_DSN="postgresql://x/y", RELAY_CONNECT_URL="http://c:1/")
    s = load_settings()
    assert (s.bootstrap_servers, s.dsn, s.connect_rest_url) == ("k:1", "postgresql://x/y", "http://c:1")


def test_every_problem_is_listed_with_variable_value_and_expectation(env):
    env(RELAY_PG_PORT="abc", RELAY_TOPIC_PARTITIONS="0", RELAY_KAFKA_PROT="1")
    with pytest.raises(ConfigError) as info:
        load_settings()
    problems = info.value.problems
    assert len(problems) == 3
    text = str(info.value)
    assert "RELAY_PG_PORT='abc'" in text and "integer" in text
    assert "RELAY_TOPIC_PARTITIONS='0'" in text and "greater than or equal to 1" in text
    assert "RELAY_KAFKA_PROT: unknown setting; did you mean RELAY_KAFKA_PORT?" in text


def test_unrelated_environment_is_ignored(env):
    env(PATH="/bin", RELAYX="1")
    load_settings()


@pytest.mark.parametrize("value, expected", [
    ("order", ["order"]),
    ("c1,c3", ["c1", "c3"]),
    ("order, payment", ["order", "payment"]),
    ('["c1", "c3"]', ["c1", "c3"]),
])
def test_list_settings_from_the_environment(env, value, expected):
    env(RELAY_AGGREGATE_TYPES=value)
    assert load_settings().aggregate_types == expected


def test_bad_list_item_names_variable_and_value(env):
    env(RELAY_AGGREGATE_TYPES="order,bad type")
    with pytest.raises(ConfigError, match="RELAY_AGGREGATE_TYPES.*'bad type'"):
        load_settings()


def test_colliding_aggregate_types_are_refused(env):
    env(RELAY_AGGREGATE_TYPES="order_item,order.item")
    with pytest.raises(ConfigError, match="collide"):
        load_settings()


def test_settings_are_immutable(env):
    s = load_settings()
    with pytest.raises(ValidationError, match="frozen"):
        s.pg_port = 1  # type: ignore[misc]


def test_passwords_are_never_shown(env):
    env(RELAY_PG_PASSWORD="hunter2", RELAY_PG_CDC_PASSWORD="cdc-s3cret")
    s = load_settings()
    assert "hunter2" in s.dsn  # for connecting
    shown = f"{s!r} {s} {s.dsn_display} {s.model_dump()}"
    assert "hunter2" not in shown and "cdc-s3cret" not in shown
    assert s.dsn_display == f"postgresql://relay:****@127.0.0.1:{s.pg_port}/relay"


def test_bad_secret_value_is_not_echoed(env):
    env(RELAY_PG_DSN="postgresql://u:pw@h/d", RELAY_PG_PORT="x")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "pw@" not in str(info.value)


@pytest.mark.parametrize("dsn, shown", [
    ("postgresql://relay:s3cret@127.0.0.1:5432/relay", "postgresql://relay:****@127.0.0.1:5432/relay"),
    ("postgresql://relay@h/db", "postgresql://relay@h/db"),
    ("host=h user=u password=s3cret dbname=d", "host=h user=u password=**** dbname=d"),
    ("host=h password='a b' dbname=d", "host=h password=**** dbname=d"),
    ("postgresql://h/db?user=u&password=s3cret", "postgresql://h/db?user=u&password=****"),
])
def test_mask_dsn(dsn, shown):
    assert mask_dsn(dsn) == shown


def test_postgres_tls_goes_into_every_dsn_and_the_connector(tmp_path):
    from relay.connect import render_outbox_connector

    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    s = load_settings({"RELAY_PG_SSLMODE": "verify-full", "RELAY_PG_SSL_ROOT_CERT": str(ca)})
    assert s.dsn.endswith(f"?sslmode=verify-full&sslrootcert={ca}") and s.cdc_dsn.endswith(f"sslrootcert={ca}")
    config = render_outbox_connector(s)
    assert config["database.sslmode"] == "verify-full" and config["database.sslrootcert"] == str(ca)
    assert "database.sslmode" not in render_outbox_connector(load_settings({}))
    with pytest.raises(ConfigError, match="RELAY_PG_SSL_ROOT_CERT = '/nope.pem': no such file"):
        load_settings({"RELAY_PG_SSLMODE": "verify-full", "RELAY_PG_SSL_ROOT_CERT": "/nope.pem"})


def test_connect_basic_auth_needs_a_user_and_one_password(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    s = load_settings({"RELAY_CONNECT_USERNAME": "operator", "RELAY_CONNECT_PASSWORD_FILE": str(pw)})
    assert s.connect_auth == ("operator", "s3cret")
    assert load_settings({}).connect_auth is None
    with pytest.raises(ConfigError, match="RELAY_CONNECT_USERNAME and a password"):
        load_settings({"RELAY_CONNECT_USERNAME": "operator"})
    with pytest.raises(ConfigError, match="both set; expected one"):
        load_settings({"RELAY_CONNECT_USERNAME": "o", "RELAY_CONNECT_PASSWORD": "x",
                       "RELAY_CONNECT_PASSWORD_FILE": str(pw)})
