"""Kafka's refusals as clear errors: of who a client is (SASL/TLS login) or of what it asked
(a missing ACL), each naming the principal and the topic, group or cluster refused.

librdkafka reports a failed login only through the client's error callback, and keeps retrying:
a client of ours would hang on "broker transport failure". :class:`LoginWatch` is that
callback (``client_config`` installs one in every client); whoever drives the client (a poll
loop, a metadata call that failed) asks it and raises :class:`relay.errors.KafkaAccessDenied`
at once. An authorization error code is translated by :func:`denied`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from confluent_kafka import KafkaError

from relay.errors import KafkaAccessDenied

if TYPE_CHECKING:
    from relay.config import Settings

LOGIN_FAILED = frozenset({KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED})
DENIED_KIND = {KafkaError.TOPIC_AUTHORIZATION_FAILED: "topic", KafkaError.GROUP_AUTHORIZATION_FAILED: "group",
               KafkaError.CLUSTER_AUTHORIZATION_FAILED: "cluster",
               KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "transactional id"}
ACLS_HINT = "expected an ACL that allows it (docs/security.md lists what each role needs)"


def principal(s: Settings) -> str:
    """Who Kafka sees: the SASL user, the certificate's subject, or ANONYMOUS."""
    if s.kafka_security_protocol in ("SASL_SSL", "SASL_PLAINTEXT"):
        return f"User:{s.kafka_sasl_username}"
    if s.kafka_ssl_cert_file is not None:
        return f"the subject of {s.kafka_ssl_cert_file}"
    return "User:ANONYMOUS"


def is_denied(code: int) -> bool:
    return code in DENIED_KIND


def denied(s: Settings, code: int, name: str | None, action: str, detail: str = "") -> KafkaAccessDenied:
    """An authorization error ``code`` as our error: ``action`` (read, create, join...) on
    ``name`` (the topic or group; None for the cluster)."""
    kind = DENIED_KIND.get(code, "resource")
    what = kind if name is None or kind == "cluster" else f"{kind} {name}"
    said = f" (Kafka: {detail})" if detail else ""
    return KafkaAccessDenied(f"Kafka at {s.bootstrap_servers} does not allow {principal(s)} to {action} {what}{said}; "
                             f"{ACLS_HINT}", resource=what)


def login_refused(s: Settings, detail: str) -> KafkaAccessDenied:
    mech = f" with {s.kafka_sasl_mechanism}" if s.kafka_sasl_mechanism else ""
    return KafkaAccessDenied(
        f"Kafka at {s.bootstrap_servers} refused the login of {principal(s)}{mech} ({detail}); expected the "
        "credentials of a user of this cluster (RELAY_KAFKA_SASL_USERNAME and RELAY_KAFKA_SASL_PASSWORD or _FILE, "
        "or the TLS certificate)")


class LoginWatch:
    """A confluent-kafka ``error_cb`` that remembers the first failed login (thread-safe). With an
    error callback librdkafka no longer logs its errors itself, so every other one goes to our
    rate-limited Kafka logger (relay.kafka_logs)."""

    def __init__(self, *, log: bool = True) -> None:
        self._lock = threading.Lock()
        self.detail: str | None = None
        self.log = log  # False for a short probe, whose caller says what went wrong in one line

    def __call__(self, err: KafkaError) -> None:
        if err.code() in LOGIN_FAILED:
            with self._lock:
                if self.detail is None:
                    self.detail = err.str()
            return
        if not self.log:
            return
        from relay.kafka_logs import kafka_logger

        kafka_logger().error("%s: %s", err.name(), err.str())

    def check(self, s: Settings) -> None:
        """Raise KafkaAccessDenied if a login failed."""
        if self.detail is not None:
            raise login_refused(s, self.detail)
