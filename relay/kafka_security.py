"""Kafka client security in one place: how every client of ours connects, from the settings.

The settings (``RELAY_KAFKA_SECURITY_PROTOCOL``, ``RELAY_KAFKA_SASL_*``, ``RELAY_KAFKA_SSL_*``)
are checked together (:func:`problems`, every problem at once) and turned into each client's
dialect here, so that confluent-kafka (:func:`librdkafka`), aiokafka under Faust
(:func:`aiokafka`) and Kafka's Java clients in Connect (:func:`java`) connect the same way.
Secrets never appear in what :func:`java` renders for a file or a connector: it refers to them
through Kafka's FileConfigProvider (``${file:<path>:<key>}``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from relay.config import Settings

SASL = ("SASL_PLAINTEXT", "SASL_SSL")
TLS = ("SSL", "SASL_SSL")
JAAS_MODULE = {"PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
               "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
               "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule"}


def problems(s: Settings) -> list[str]:
    """Every inconsistency of the security settings, each naming the setting, its value and what
    was expected."""
    out = []
    protocol = s.kafka_security_protocol
    sasl_set = [n for n in ("kafka_sasl_mechanism", "kafka_sasl_username") if getattr(s, n) is not None]
    if protocol in SASL:
        for name in ("kafka_sasl_mechanism", "kafka_sasl_username"):
            if getattr(s, name) is None:
                out.append(f"RELAY_{name.upper()} is unset; expected a value with security protocol {protocol}")
        if s.kafka_sasl_password is None and s.kafka_sasl_password_file is None:
            out.append(f"RELAY_KAFKA_SASL_PASSWORD (or _FILE) is unset; expected one with security protocol {protocol}")
    elif sasl_set:
        out.append(f"RELAY_KAFKA_SECURITY_PROTOCOL = {protocol!r} with {', '.join(n.upper() for n in sasl_set)} set; "
                   f"expected one of {list(SASL)} for SASL")
    if s.kafka_sasl_password is not None and s.kafka_sasl_password_file is not None:
        out.append("RELAY_KAFKA_SASL_PASSWORD and RELAY_KAFKA_SASL_PASSWORD_FILE are both set; expected one")
    tls_files = {"kafka_ssl_ca_file": s.kafka_ssl_ca_file, "kafka_ssl_cert_file": s.kafka_ssl_cert_file,
                 "kafka_ssl_key_file": s.kafka_ssl_key_file, "kafka_sasl_password_file": s.kafka_sasl_password_file}
    if protocol not in TLS:
        for name in ("kafka_ssl_ca_file", "kafka_ssl_cert_file", "kafka_ssl_key_file"):
            if tls_files[name] is not None:
                out.append(f"RELAY_{name.upper()} = {str(tls_files[name])!r} with security protocol {protocol!r}; "
                           f"expected one of {list(TLS)} for TLS")
    if (s.kafka_ssl_cert_file is None) != (s.kafka_ssl_key_file is None):
        out.append("RELAY_KAFKA_SSL_CERT_FILE and RELAY_KAFKA_SSL_KEY_FILE: one is set; expected both (mutual TLS) "
                   "or neither")
    for name, path in tls_files.items():
        if path is not None and not Path(path).is_file():
            out.append(f"RELAY_{name.upper()} = {str(path)!r}: no such file; expected a readable file")
    return out


def password(s: Settings) -> str | None:
    """The SASL password, from the setting or its file (read when a client is made)."""
    if s.kafka_sasl_password is not None:
        return s.kafka_sasl_password.get_secret_value()
    if s.kafka_sasl_password_file is not None:
        return Path(s.kafka_sasl_password_file).read_text(encoding="utf-8").strip()
    return None


def librdkafka(s: Settings) -> dict[str, Any]:
    """confluent-kafka's keys (nothing for PLAINTEXT: the clients' defaults)."""
    protocol = s.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    conf: dict[str, Any] = {"security.protocol": protocol}
    if protocol in SASL:
        conf.update({"sasl.mechanisms": s.kafka_sasl_mechanism, "sasl.username": s.kafka_sasl_username,
                     "sasl.password": password(s)})
    if protocol in TLS:
        conf["ssl.endpoint.identification.algorithm"] = "https"  # the broker's name must match its certificate
        for key, path in (("ssl.ca.location", s.kafka_ssl_ca_file), ("ssl.certificate.location", s.kafka_ssl_cert_file),
                          ("ssl.key.location", s.kafka_ssl_key_file)):
            if path is not None:
                conf[key] = str(path)
        if s.kafka_ssl_key_password is not None:
            conf["ssl.key.password"] = s.kafka_ssl_key_password.get_secret_value()
    return conf


def aiokafka(s: Settings) -> dict[str, Any]:
    """aiokafka's keyword arguments (Faust passes them through), with an SSL context for TLS."""
    protocol = s.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    conf: dict[str, Any] = {"security_protocol": protocol}
    if protocol in SASL:
        conf.update({"sasl_mechanism": s.kafka_sasl_mechanism, "sasl_plain_username": s.kafka_sasl_username,
                     "sasl_plain_password": password(s)})
    if protocol in TLS:
        import ssl

        context = ssl.create_default_context(cafile=str(s.kafka_ssl_ca_file) if s.kafka_ssl_ca_file else None)
        if s.kafka_ssl_cert_file is not None and s.kafka_ssl_key_file is not None:
            key_password = s.kafka_ssl_key_password.get_secret_value() if s.kafka_ssl_key_password else None
            context.load_cert_chain(str(s.kafka_ssl_cert_file), str(s.kafka_ssl_key_file), key_password)
        conf["ssl_context"] = context
    return conf


def faust_credentials(s: Settings) -> Any:
    """Faust's ``broker_credentials`` (it hands them to aiokafka); None for PLAINTEXT."""
    protocol = s.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    import faust

    conf = aiokafka(s)
    if protocol in SASL:
        return faust.SASLCredentials(username=conf["sasl_plain_username"], password=conf["sasl_plain_password"],
                                     mechanism=conf["sasl_mechanism"], ssl_context=conf.get("ssl_context"))
    return faust.SSLCredentials(conf["ssl_context"])


def java(s: Settings, *, secrets_file: str, prefix: str = "") -> dict[str, str]:
    """Kafka's Java client properties (a Connect worker: ``prefix`` "", "producer.", "consumer.",
    "admin."), with the password as a FileConfigProvider reference to ``secrets_file``'s
    ``kafka.sasl.password``: never the secret itself. Mutual TLS is not rendered: Kafka's PEM
    keystore settings take the certificate and key as values, not paths (the native stack's
    Connect logs in with SASL); a client certificate in ``s`` is refused here, not ignored."""
    protocol = s.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    props: dict[str, str] = {"security.protocol": protocol}
    if protocol in SASL:
        module = JAAS_MODULE[str(s.kafka_sasl_mechanism)]
        props.update({"sasl.mechanism": str(s.kafka_sasl_mechanism), "sasl.jaas.config": (
            f'{module} required username="{s.kafka_sasl_username}" '
            f'password="${{file:{secrets_file}:kafka.sasl.password}}";')})
    if protocol in TLS:
        props["ssl.endpoint.identification.algorithm"] = "https"
        if s.kafka_ssl_ca_file is not None:
            props.update({"ssl.truststore.type": "PEM", "ssl.truststore.location": str(s.kafka_ssl_ca_file)})
        if s.kafka_ssl_cert_file is not None:
            from relay.errors import ConfigError

            raise ConfigError([f"RELAY_KAFKA_SSL_CERT_FILE = {str(s.kafka_ssl_cert_file)!r} for the Connect worker; "
                               "expected SASL for it (mutual TLS is not rendered for Kafka's Java clients yet)"])
    return {prefix + k: v for k, v in props.items()}
