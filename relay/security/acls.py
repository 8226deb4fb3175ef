"""Least-privilege Kafka ACLs of each role, derived from the names the code uses (no I/O).

The one place the grants are written down: the native stack's SASL_SSL profile creates them with
Kafka's admin API (relay.stack.secure), the Kubernetes ``KafkaUser`` resources are generated from
them (k8s/tools/manifests.py), and docs/security.md explains them.

- **Connect** (the outbox connector's workers, exactly-once source): its group and internal
  topics; Write/Create on the routed topics (``outbox.event.`` prefix: a new aggregate type gets
  its topic) and on Debezium's heartbeat topic, never Read; the transactional ids of its tasks
  (``<group>-<connector>-<task>``) and of the leader's config writer (``connect-cluster-<group>``);
  IdempotentWrite and Describe on the cluster.
- **A worker** (``relay worker <name>``): its group, and its restore reader's group
  ``<group>-restore`` (the reader only assigns, but librdkafka looks the coordinator up); Read on
  the topics it reads (its source and retry stages) and on its changelogs (restored at
  assignment); Write/Create on the topics it writes (retry stages, dead letters, changelogs);
  Create on its source too (a worker started before Debezium made the topic creates it with our
  settings; it never writes it); DescribeConfigs on everything it declares (it checks
  ``max.message.bytes``); on the Faust engine, its assignor's topic ``<app id>-__assignor-__leader``.
  Literal names only: a prefix ``outbox.event.order.`` would also cover another aggregate type's
  topic such as ``outbox.event.order.item``.

Every ACL is one operation on one resource (Strimzi's spelling: resource ``topic`` | ``group`` |
``transactionalId`` | ``cluster``, pattern ``literal`` | ``prefix``), so two lists compare as sets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, NamedTuple

from relay.headers import EVENT_TOPIC_PREFIX

if TYPE_CHECKING:
    from relay.config import Settings

TOPIC, GROUP, TRANSACTIONAL_ID, CLUSTER = "topic", "group", "transactionalId", "cluster"
LITERAL, PREFIX = "literal", "prefix"
CLUSTER_NAME = "kafka-cluster"
CONNECT_GROUP = "relay-connect"  # the Connect workers' group.id; internal topics relay-connect-{configs,...}
HEARTBEAT_TOPIC_PREFIX = "__debezium-heartbeat"  # Debezium's topic.heartbeat.prefix default


class Acl(NamedTuple):
    """Allow ``principal`` (``User:<name>``) ``op`` on a resource."""

    principal: str
    resource: str
    name: str
    pattern: str
    op: str

    def __str__(self) -> str:
        where = f"{self.name}*" if self.pattern == PREFIX else self.name
        return f"{self.principal} {self.op} {self.resource} {where}"


def _grant(user: str, resource: str, name: str, pattern: str, ops: Iterable[str]) -> list[Acl]:
    return [Acl(f"User:{user}", resource, name, pattern, op) for op in ops]


def heartbeat_topic(settings: Settings) -> str:
    """Debezium's heartbeat topic: ``<topic.heartbeat.prefix>.<topic.prefix>``."""
    return f"{HEARTBEAT_TOPIC_PREFIX}.{settings.topic_prefix}"


def connect_acls(user: str, settings: Settings, group: str = CONNECT_GROUP) -> list[Acl]:
    """What the Connect workers running the outbox connector need."""
    return sorted([
        *_grant(user, GROUP, group, LITERAL, ("Read", "Describe")),
        *_grant(user, TOPIC, f"{group}-", PREFIX, ("Read", "Write", "Create", "Describe", "DescribeConfigs")),
        *_grant(user, TOPIC, EVENT_TOPIC_PREFIX, PREFIX, ("Write", "Create", "Describe")),
        *_grant(user, TOPIC, heartbeat_topic(settings), LITERAL, ("Write", "Create", "Describe")),
        *_grant(user, TRANSACTIONAL_ID, f"{group}-{settings.connector_name}-", PREFIX, ("Write", "Describe")),
        *_grant(user, TRANSACTIONAL_ID, f"connect-cluster-{group}", LITERAL, ("Write", "Describe")),
        *_grant(user, CLUSTER, CLUSTER_NAME, LITERAL, ("IdempotentWrite", "Describe")),
    ])


class WorkerTopics(NamedTuple):
    group: str                                  # group.id (the consumer's name)
    reads: list[str]                            # source and retry stages
    writes: list[str]                           # retry stages, dead letters, changelogs
    changelogs: dict[str, dict[str, str]]       # changelog -> its creation configs
    declared: list[str]                         # everything the worker declares


def worker_topics(name: str, settings: Settings) -> WorkerTopics:
    """What ``relay worker <name>`` (kafka engine) reads, writes and declares: asked of the worker
    itself, built but not started."""
    from relay.consume._kafka.worker import KafkaWorker
    from relay.consume.loader import load_consumer

    w = KafkaWorker(load_consumer(name, settings), settings)
    sources = {sub.sub.topic for sub in w.subs}
    declared = list(w.relay_topics)
    return WorkerTopics(w.consumer.name, [t for sub in w.subs for t in sub.reads()],
                        [t for t in declared if t not in sources], dict(w.changelogs), declared)


def faust_leader_topic(app_id: str) -> str:
    """The topic Faust's partition assignor creates and uses for its app (``--engine faust``)."""
    return f"{app_id}-__assignor-__leader"


def worker_acls(user: str, name: str, settings: Settings) -> list[Acl]:
    """What ``relay worker <name>`` needs, as ``user``, on either engine (the Faust engine's
    assignor topic included)."""
    from relay.consume._kafka.restore import restore_group

    wt = worker_topics(name, settings)
    acls = _grant(user, GROUP, wt.group, LITERAL, ("Read", "Describe"))
    acls += _grant(user, GROUP, restore_group(wt.group), LITERAL, ("Read", "Describe"))
    acls += _grant(user, TOPIC, faust_leader_topic(wt.group), LITERAL,
                   ("Read", "Write", "Create", "Describe", "DescribeConfigs"))
    for topic in dict.fromkeys(wt.declared):
        ops = ["Describe", "DescribeConfigs"]
        if topic in wt.reads or topic in wt.changelogs:
            ops.append("Read")
        if topic in wt.writes:
            ops += ["Write", "Create"]
        else:  # its source: created with our settings if the worker starts before Debezium made it
            ops.append("Create")
        acls += _grant(user, TOPIC, topic, LITERAL, dict.fromkeys(ops))
    return sorted(set(acls))


def strimzi(grants: Iterable[Acl]) -> list[dict[str, Any]]:
    """A ``KafkaUser``'s ``spec.authorization.acls``: one entry per resource with its operations."""
    by_resource: dict[tuple[str, str, str], list[str]] = {}
    for a in grants:
        by_resource.setdefault((a.resource, a.name, a.pattern), []).append(a.op)
    out = []
    for (resource, name, pattern), ops in sorted(by_resource.items()):
        res: dict[str, Any] = {"type": resource}
        if resource != CLUSTER:
            res.update({"name": name, "patternType": pattern})
        out.append({"resource": res, "operations": sorted(ops), "host": "*"})
    return out


def from_strimzi(user: str, entries: Iterable[dict[str, Any]]) -> list[Acl]:
    """The inverse of :func:`strimzi` (allow entries only): to compare a ``KafkaUser``."""
    out = []
    for e in entries:
        if e.get("type", "allow") != "allow":
            raise ValueError(f"field 'type' = {e.get('type')!r}; expected allow (we grant, never deny)")
        r = e["resource"]
        out += _grant(user, r["type"], r.get("name", CLUSTER_NAME), r.get("patternType", LITERAL), e["operations"])
    return sorted(set(out))
