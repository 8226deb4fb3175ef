"""Kafka's refusals as our errors, the ACL model's admin-API form, and worker env files (no I/O)."""

import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

from relay.config import load_settings
from relay.documents import read_env_file
from relay.errors import KafkaAccessDenied
from relay.kafka_access import LoginWatch, denied, is_denied, principal
from relay.security.acls import connect_acls, from_strimzi, strimzi, worker_acls
from relay.security.kafka_admin import binding


@pytest.fixture
def sasl(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    return load_settings({"RELAY_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                          "RELAY_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "RELAY_KAFKA_SASL_USERNAME": "relay-orders",
                          "RELAY_KAFKA_SASL_PASSWORD_FILE": str(pw)})


def test_a_denied_group_names_the_principal_the_group_and_what_was_asked(sasl):
    err = denied(sasl, KafkaError.GROUP_AUTHORIZATION_FAILED, "relay-orders", "join", "Group authorization failed.")
    assert isinstance(err, KafkaAccessDenied) and err.retriable is False
    assert "does not allow User:relay-orders to join group relay-orders" in str(err)
    assert err.resource == "group relay-orders"
    assert is_denied(KafkaError.TOPIC_AUTHORIZATION_FAILED) and not is_denied(KafkaError._TRANSPORT)


def test_a_refused_login_is_remembered_and_raised_without_the_password(sasl):
    watch = LoginWatch()
    watch(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    watch.check(sasl)  # not a login problem: nothing raised
    watch(KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: invalid credentials"))
    with pytest.raises(KafkaAccessDenied, match="refused the login of User:relay-orders with SCRAM-SHA-512") as exc:
        watch.check(sasl)
    assert "s3cret" not in str(exc.value)
    assert principal(load_settings({})) == "User:ANONYMOUS"


def test_every_acl_maps_to_the_admin_api():
    s = load_settings({})
    grants = connect_acls("connect", s) + worker_acls("relay-orders", "orders", s)
    bindings = [binding(a) for a in grants]
    assert {b.operation for b in bindings} >= {AclOperation.READ, AclOperation.WRITE, AclOperation.IDEMPOTENT_WRITE,
                                               AclOperation.DESCRIBE_CONFIGS}
    tx = [b for b in bindings if b.restype == ResourceType.TRANSACTIONAL_ID]
    assert {b.resource_pattern_type for b in tx} == {ResourcePatternType.PREFIXED, ResourcePatternType.LITERAL}
    assert from_strimzi("connect", strimzi(connect_acls("connect", s))) == sorted(connect_acls("connect", s))


def test_an_env_file_takes_relay_settings_and_names_a_bad_line(tmp_path):
    good = tmp_path / "w.env"
    good.write_text("# the worker's user\nRELAY_KAFKA_SASL_USERNAME=relay-orders\n\n"
                    "RELAY_KAFKA_SSL_CA_FILE = /ca.pem\n")
    assert read_env_file(good) == {"RELAY_KAFKA_SASL_USERNAME": "relay-orders", "RELAY_KAFKA_SSL_CA_FILE": "/ca.pem"}
    bad = tmp_path / "b.env"
    bad.write_text("PATH=/bin\n")
    with pytest.raises(ValueError, match=r"b.env:1: line = 'PATH=/bin'; expected KEY=value with a RELAY_ setting"):
        read_env_file(bad)
