"""Users and ACLs through Kafka's own admin API (confluent-kafka), as a user with the right to."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from relay.errors import RelayError
from relay.security.acls import CLUSTER, GROUP, LITERAL, PREFIX, TOPIC, TRANSACTIONAL_ID, Acl

if TYPE_CHECKING:
    from relay.config import Settings

SCRAM_ITERATIONS = 8192
_RESOURCE = {TOPIC: ResourceType.TOPIC, GROUP: ResourceType.GROUP, TRANSACTIONAL_ID: ResourceType.TRANSACTIONAL_ID,
             CLUSTER: ResourceType.BROKER}
_PATTERN = {LITERAL: ResourcePatternType.LITERAL, PREFIX: ResourcePatternType.PREFIXED}
# Strimzi's spelling (Read, DescribeConfigs, IdempotentWrite) -> the admin API's enum
_OP = {op.name.replace("_", "").lower(): op for op in AclOperation}


def binding(acl: Acl) -> AclBinding:
    return AclBinding(_RESOURCE[acl.resource], acl.name, _PATTERN[acl.pattern], acl.principal, "*",
                      _OP[acl.op.lower()], AclPermissionType.ALLOW)


def upsert_users(admin_settings: Settings, passwords: Mapping[str, str], timeout_s: float = 30) -> None:
    """Create or update each user's SCRAM-SHA-512 credential."""
    from relay.topics import admin

    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(user, info, password.encode()) for user, password in passwords.items()]
    client = admin(admin_settings)  # held until the answers are in (a dropped client fails them)
    futures = client.alter_user_scram_credentials(upserts, request_timeout=timeout_s)
    _wait(admin_settings, futures.items(), "create the SCRAM credentials of", timeout_s)


def create_acls(admin_settings: Settings, acls: Iterable[Acl], timeout_s: float = 30) -> int:
    """Create every ACL (an existing one is left as it is); returns how many were sent."""
    from relay.topics import admin

    bindings = [binding(a) for a in acls]
    if not bindings:
        return 0
    client = admin(admin_settings)
    futures = client.create_acls(bindings, request_timeout=timeout_s)
    _wait(admin_settings, futures.items(), "create the ACL", timeout_s)
    return len(bindings)


def _wait(s: Settings, futures: Iterable[tuple[object, object]], action: str, timeout_s: float) -> None:
    from relay.kafka_access import denied, is_denied

    for subject, future in futures:
        try:
            future.result(timeout=timeout_s)  # type: ignore[attr-defined]
        except KafkaException as exc:
            err = exc.args[0]
            if is_denied(err.code()):  # altering users and ACLs needs Alter on the cluster
                raise denied(s, err.code(), None, f"{action} {subject}; that needs Alter on the", err.str()) from None
            raise RelayError(f"could not {action} {subject}: {err}", retriable=bool(err.retriable())) from None
