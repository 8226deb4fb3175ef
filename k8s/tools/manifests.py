"""Generate k8s/base/generated/*.yaml from the code, and say what Kubernetes expects of it.

    .venv/bin/python k8s/tools/manifests.py          # (re)write the generated manifests
    .venv/bin/python k8s/tools/manifests.py --check  # exit 1 if a committed file is out of date

What is generated, and from what (tests/unit/test_k8s.py checks each file is current):

- ``kafkaconnector.yaml``: the outbox ``KafkaConnector``; ``spec.config`` is exactly what
  ``relay connectors render`` prints with :data:`K8S_ENV` (the Kubernetes host, port and secrets
  file), minus ``connector.class``/``tasks.max``, which Strimzi takes as ``spec.class``/``spec.tasksMax``.
- ``kafkatopics.yaml``: a ``KafkaTopic`` per topic the code uses: ``outbox.event.<type>`` for
  ``Settings.aggregate_types``, every topic each worker in :data:`WORKERS` declares (its source,
  retry stages, dead-letter topic and changelogs, from the kafka engine's own ``relay_topics`` and
  ``changelogs``) and ``outbox.dlq``; partitions, replication and ``max.message.bytes`` from Settings.
- ``kafkausers.yaml``: a ``KafkaUser`` (SCRAM-SHA-512, simple authorization) per principal, with
  the ACLs of relay.security.acls (the same rules the native stack's SASL_SSL profile applies).

Run with the project's venv (it imports relay); nothing here connects to anything.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from relay.config import Settings, load_settings  # noqa: E402
from relay.connect.render import override_allowlist, render_outbox_connector  # noqa: E402
from relay.headers import OUTBOX_DLQ_TOPIC, event_topic  # noqa: E402
from relay.security.acls import (  # noqa: E402
    CONNECT_GROUP,
    Acl,
    WorkerTopics,
    connect_acls,
    from_strimzi,
    strimzi,
    worker_acls,
    worker_topics as _worker_topics,  # noqa: E402
)

GENERATED = ROOT / "k8s" / "base" / "generated"
API = "kafka.strimzi.io/v1"

# --- names the hand-written manifests use too (tests check they agree) ------------------------
KAFKA_CLUSTER = "events"                 # the existing Strimzi `Kafka` (label strimzi.io/cluster)
KAFKA_NAMESPACE = "kafka"                # where it and the Strimzi cluster operator run
CONNECT_CLUSTER = "relay-connect"        # the KafkaConnect (label strimzi.io/cluster of connectors)
CONNECT_INTERNAL_TOPICS = {"config": f"{CONNECT_GROUP}-configs", "offset": f"{CONNECT_GROUP}-offsets",
                           "status": f"{CONNECT_GROUP}-status"}
CONNECT_USER = "relay-connect"           # KafkaUser of the Connect workers (and of their tasks' clients)
PG_CDC_SECRET = "relay-pg-cdc"           # Secret with key secrets.properties: `pg.password=...`
PG_CDC_MOUNT = "/mnt/relay-pg-cdc"       # where Connect mounts it (Strimzi allows volumes under /mnt only)

# --- the settings as Kubernetes has them (validated by load_settings) ---------------------------
K8S_ENV = {
    "RELAY_CONNECTOR_PG_HOST": "postgres.postgres.svc",   # Postgres as Connect sees it
    "RELAY_PG_PORT": "5432",
    "RELAY_CONNECT_SECRETS_FILE": f"{PG_CDC_MOUNT}/secrets.properties",
    "RELAY_TOPIC_REPLICATION": "3",
}
# keys of the connector config that differ from the native stack's render (host, port, secrets
# file, replication); everything else must be the same
K8S_SPECIFIC_CONNECTOR_KEYS = {
    "database.hostname", "database.port", "database.password",
    "topic.creation.default.replication.factor", "topic.creation.compacted.replication.factor",
}

# workers deployed (relay worker <name>): name -> its KafkaUser (the consumer's name, as in the native
# stack's SASL_SSL profile)
WORKERS = {"orders": "relay-orders"}

DAY_MS = 24 * 3600 * 1000
RETENTION_MS = {"event": 7 * DAY_MS, "retry": 7 * DAY_MS, "dlq": 30 * DAY_MS}
MIN_INSYNC_REPLICAS = "2"


def k8s_settings() -> Settings:
    return load_settings(K8S_ENV)


def connector_config(settings: Settings | None = None) -> dict[str, str]:
    return render_outbox_connector(settings or k8s_settings())


connect_override_allowlist = override_allowlist


# --- topics ----------------------------------------------------------------------------------
def topic_kind(name: str, changelogs: dict[str, dict[str, str]]) -> str:
    if name in changelogs:
        return "changelog"
    if name == OUTBOX_DLQ_TOPIC or name.endswith(".dlq"):
        return "dlq"
    if ".retry." in name:
        return "retry"
    return "event"


def topics(settings: Settings | None = None) -> dict[str, dict[str, str]]:
    """Every topic to declare -> its configs (``max.message.bytes`` on all, as relay.topics does)."""
    s = settings or k8s_settings()
    names = [event_topic(t) for t in s.aggregate_types]
    changelogs: dict[str, dict[str, str]] = {}
    for worker in WORKERS:
        wt = worker_topics(worker, s)
        names += wt.declared
        changelogs.update(wt.changelogs)
    names.append(OUTBOX_DLQ_TOPIC)
    out: dict[str, dict[str, str]] = {}
    for name in dict.fromkeys(names):
        kind = topic_kind(name, changelogs)
        config = {"max.message.bytes": str(s.max_record_bytes), "min.insync.replicas": MIN_INSYNC_REPLICAS}
        if kind == "changelog":
            config.update(changelogs[name])
        else:
            config.update({"cleanup.policy": "delete", "retention.ms": str(RETENTION_MS[kind])})
        out[name] = config
    return out


def k8s_name(topic: str) -> str:
    """A KafkaTopic's metadata.name for a topic (DNS-1123: lower case, '.', '-'; the real name is
    spec.topicName)."""
    return topic.lower().replace("_", "-")


def kafka_topics(settings: Settings | None = None) -> list[dict[str, Any]]:
    s = settings or k8s_settings()
    return [{
        "apiVersion": API, "kind": "KafkaTopic",
        "metadata": {"name": k8s_name(name), "labels": {"strimzi.io/cluster": KAFKA_CLUSTER}},
        "spec": {"topicName": name, "partitions": s.topic_partitions, "replicas": s.topic_replication,
                 "config": config},
    } for name, config in topics(s).items()]


# --- ACLs (relay.security.acls: the same grants as the native stack's SASL_SSL profile) ------
def worker_topics(name: str, settings: Settings | None = None) -> WorkerTopics:
    return _worker_topics(name, settings or k8s_settings())


def acls(settings: Settings | None = None) -> dict[str, list[Acl]]:
    """KafkaUser name -> its ACLs: every grant of the deployment."""
    s = settings or k8s_settings()
    return {CONNECT_USER: connect_acls(CONNECT_USER, s, CONNECT_GROUP),
            **{user: worker_acls(user, w, s) for w, user in WORKERS.items()}}


strimzi_acls, expand_strimzi_acls = strimzi, from_strimzi


def kafka_users(settings: Settings | None = None) -> list[dict[str, Any]]:
    return [{
        "apiVersion": API, "kind": "KafkaUser",
        "metadata": {"name": user, "labels": {"strimzi.io/cluster": KAFKA_CLUSTER}},
        "spec": {"authentication": {"type": "scram-sha-512"},
                 "authorization": {"type": "simple", "acls": strimzi_acls(grants)}},
    } for user, grants in acls(settings).items()]


# --- the connector ---------------------------------------------------------------------------
def kafka_connector(settings: Settings | None = None) -> dict[str, Any]:
    s = settings or k8s_settings()
    config = connector_config(s)
    klass, tasks = config.pop("connector.class"), int(config.pop("tasks.max"))
    return {
        "apiVersion": API, "kind": "KafkaConnector",
        "metadata": {"name": s.connector_name, "labels": {"strimzi.io/cluster": CONNECT_CLUSTER}},
        "spec": {"class": klass, "tasksMax": tasks, "autoRestart": {"enabled": True}, "state": "running",
                 "config": config},
    }


# --- files -----------------------------------------------------------------------------------
HEADER = ("# GENERATED by k8s/tools/manifests.py from the code ({source}); do not edit.\n"
          "# Regenerate: .venv/bin/python k8s/tools/manifests.py   (tests/unit/test_k8s.py checks it is current)\n")


def dump(docs: list[dict[str, Any]], source: str) -> str:
    body = "---\n".join(yaml.safe_dump(d, sort_keys=False, width=1000, allow_unicode=True) for d in docs)
    return HEADER.format(source=source) + body


def files(settings: Settings | None = None) -> dict[str, str]:
    """File name under k8s/base/generated/ -> its content."""
    return {
        "kafkaconnector.yaml": dump([kafka_connector(settings)],
                                    "relay.connect.render + connectors/outbox-connector.json"),
        "kafkatopics.yaml": dump(kafka_topics(settings), "relay.config.Settings, relay.headers, the workers' topics"),
        "kafkausers.yaml": dump(kafka_users(settings), "relay.security.acls"),
    }


def stale(settings: Settings | None = None) -> list[str]:
    return [n for n, text in files(settings).items()
            if not (GENERATED / n).is_file() or (GENERATED / n).read_text(encoding="utf-8") != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file is out of date")
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale()
        for name in out_of_date:
            print(f"k8s/base/generated/{name} is out of date: run .venv/bin/python k8s/tools/manifests.py",
                  file=sys.stderr)
        return 1 if out_of_date else 0
    GENERATED.mkdir(parents=True, exist_ok=True)
    for name, text in files().items():
        (GENERATED / name).write_text(text, encoding="utf-8")
        print(f"wrote k8s/base/generated/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
