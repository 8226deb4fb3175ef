"""Settings: typed defaults, every problem listed at once, misspelled variables are errors."""

import pytest

from relay.config import load_settings
from relay.errors import ConfigError


def test_defaults_avoid_standard_ports_and_derive_addresses():
    s = load_settings({})
    assert {s.pg_port, s.kafka_port, s.connect_port}.isdisjoint({5432, 9092, 8083})
    assert s.dsn == f"postgresql://relay:relay@127.0.0.1:{s.pg_port}/relay"
    assert s.bootstrap_servers == f"127.0.0.1:{s.kafka_port}"
    assert s.connect_rest_url == f"http://127.0.0.1:{s.connect_port}"


def test_explicit_addresses_override_the_native_stack():
    s = load_settings({"RELAY_KAFKA_BOOTSTRAP": "k:1", "RELAY_PG_DSN": "postgresql://x/y",
                       "RELAY_CONNECT_URL": "http://c:1/"})
    assert (s.bootstrap_servers, s.dsn, s.connect_rest_url) == ("k:1", "postgresql://x/y", "http://c:1")


def test_every_problem_is_listed_with_variable_value_and_expectation():
    with pytest.raises(ConfigError) as info:
        load_settings({"RELAY_PG_PORT": "abc", "RELAY_TOPIC_PARTITIONS": "0", "RELAY_KAFKA_PROT": "1"})
    problems = info.value.problems
    assert len(problems) == 3
    text = str(info.value)
    assert "RELAY_PG_PORT='abc'" in text and "integer" in text
    assert "RELAY_TOPIC_PARTITIONS='0'" in text and "greater than or equal to 1" in text
    assert "RELAY_KAFKA_PROT: unknown setting; did you mean RELAY_KAFKA_PORT?" in text


def test_unrelated_environment_is_ignored():
    load_settings({"PATH": "/bin", "RELAYX": "1"})


def test_aggregate_types_from_comma_list_and_validated():
    assert load_settings({"RELAY_AGGREGATE_TYPES": "order, payment"}).aggregate_types == ["order", "payment"]
    with pytest.raises(ConfigError, match="RELAY_AGGREGATE_TYPES"):
        load_settings({"RELAY_AGGREGATE_TYPES": "order,bad type"})


def test_settings_are_immutable():
    s = load_settings({})
    with pytest.raises(Exception):
        s.pg_port = 1  # type: ignore[misc]
