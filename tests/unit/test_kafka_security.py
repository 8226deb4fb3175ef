"""Kafka client security from the settings, in one place (issue 18, pure): every inconsistency
listed at once; the same connection for confluent-kafka, aiokafka and Kafka's Java clients; no
secret in what is rendered for Connect."""

import pytest

from relay.config import load_settings
from relay.errors import ConfigError
from relay.kafka_security import aiokafka, java, librdkafka


def test_plaintext_adds_nothing_to_any_client():
    s = load_settings({})
    assert (librdkafka(s), aiokafka(s), java(s, secrets_file="/s")) == ({}, {}, {})


def test_every_inconsistency_is_listed_at_once(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_settings({"RELAY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "RELAY_KAFKA_SSL_CERT_FILE": str(tmp_path / "c"),
                       "RELAY_KAFKA_SSL_CA_FILE": str(tmp_path / "missing.pem")})
    text = str(err.value)
    for expected in ("RELAY_KAFKA_SASL_MECHANISM is unset", "RELAY_KAFKA_SASL_USERNAME is unset",
                     "RELAY_KAFKA_SASL_PASSWORD (or _FILE) is unset", "one is set; expected both",
                     "missing.pem': no such file"):
        assert expected in text, text
    with pytest.raises(ConfigError, match="expected one of \\['SASL_PLAINTEXT', 'SASL_SSL'\\] for SASL"):
        load_settings({"RELAY_KAFKA_SASL_USERNAME": "relay"})


def test_sasl_ssl_the_same_way_for_each_client_and_no_secret_for_connect(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    s = load_settings({"RELAY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "RELAY_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                       "RELAY_KAFKA_SASL_USERNAME": "relay-connect", "RELAY_KAFKA_SASL_PASSWORD_FILE": str(secret),
                       "RELAY_KAFKA_SSL_CA_FILE": str(ca)})
    assert librdkafka(s) == {"security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512",
                             "sasl.username": "relay-connect", "sasl.password": "s3cret",
                             "ssl.endpoint.identification.algorithm": "https", "ssl.ca.location": str(ca)}
    props = java(s, secrets_file="/etc/connect/secrets.properties", prefix="producer.")
    assert props["producer.sasl.mechanism"] == "SCRAM-SHA-512" and props["producer.ssl.truststore.type"] == "PEM"
    jaas = props["producer.sasl.jaas.config"]
    assert 'password="${file:/etc/connect/secrets.properties:kafka.sasl.password}"' in jaas
    assert "s3cret" not in str(props), "a reference to the secret, never the secret"
    plain = load_settings({"RELAY_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "RELAY_KAFKA_SASL_MECHANISM": "PLAIN",
                           "RELAY_KAFKA_SASL_USERNAME": "u", "RELAY_KAFKA_SASL_PASSWORD": "p"})
    assert aiokafka(plain) == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
                               "sasl_plain_username": "u", "sasl_plain_password": "p"}
    assert "p" not in repr(plain.kafka_sasl_password), "shown as a secret"


def test_the_faust_engine_gets_the_same_credentials():
    import faust

    from relay.consume._faust.app import create_app
    from relay.kafka_security import faust_credentials

    plain = load_settings({"RELAY_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "RELAY_KAFKA_SASL_MECHANISM": "PLAIN",
                           "RELAY_KAFKA_SASL_USERNAME": "u", "RELAY_KAFKA_SASL_PASSWORD": "p"})
    credentials = faust_credentials(plain)
    assert isinstance(credentials, faust.SASLCredentials) and credentials.username == "u"
    assert faust_credentials(load_settings({})) is None
    app = create_app(plain, "security-test")
    assert app.conf.broker_credentials is credentials or app.conf.broker_credentials.username == "u"
    assert app.relay_client_security["sasl.username"] == "u", "the gap reader connects the same way"
