"""k8s/: every overlay renders with the real kustomize, every object validates against its schema
(Kubernetes' own from kubernetes-validate; Strimzi's CRDs from Strimzi's released generator), and
what the manifests say agrees with the code: topics, the connector config, ACLs, worker settings.

The tools come from `make test` (target .cache/k8s/tools.ok, k8s/tools/install.sh); a missing tool
is a failure that says how to install it, never a skip.
"""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any, Callable

import jsonschema
import kubernetes_validate
import pytest
import yaml

from relay.config import ENV_PREFIX, Settings, load_settings
from relay.connect.render import render_outbox_connector
from relay.consume._kafka import worker as kafka_worker
from relay.consume._kafka.tables import changelog_topic
from relay.headers import EVENT_TOPIC_PREFIX, OUTBOX_DLQ_TOPIC, dlq_topic, event_topic, retry_topic
from relay.metrics import HEALTH_PATH, READY_PATH
from relay.security.acls import CONNECT_GROUP, heartbeat_topic

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
KUSTOMIZE = ROOT / ".cache" / "bin" / "kustomize"
KUSTOMIZE_VERSION = "v5.8.2"
INSTALL = "run `make .cache/k8s/tools.ok` (or `bash k8s/tools/install.sh`)"
OVERLAYS = ["dev", "prod"]
# Kubernetes versions the built-in kinds are validated against (kubernetes-validate's bundled schemas)
KUBE_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
STRIMZI_GROUP = "kafka.strimzi.io"
STRIMZI_KINDS = {"KafkaConnect": "kafkaconnect.yaml", "KafkaConnector": "kafkaconnector.yaml",
                 "KafkaTopic": "kafkatopic.yaml", "KafkaUser": "kafkauser.yaml"}


def _load_manifests_module() -> Any:
    spec = importlib.util.spec_from_file_location("k8s_manifests", K8S / "tools" / "manifests.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["k8s_manifests"] = module
    spec.loader.exec_module(module)
    return module


M = _load_manifests_module()


# --- tools -----------------------------------------------------------------------------------
def strimzi_version() -> str:
    pom = (K8S / "tools" / "strimzi-crds" / "pom.xml").read_text()
    return pom.split("<strimzi.version>")[1].split("</strimzi.version>")[0]


def crd_dir() -> Path:
    return ROOT / ".cache" / "k8s" / "strimzi-crds" / strimzi_version()


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    if not KUSTOMIZE.is_file():
        pytest.fail(f"kustomize is not installed at {KUSTOMIZE.relative_to(ROOT)}: {INSTALL}")
    result = subprocess.run([str(KUSTOMIZE), "build", str(K8S / "overlays" / overlay)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"kustomize build k8s/overlays/{overlay} failed:\n{result.stderr}"
    return tuple(d for d in yaml.safe_load_all(result.stdout) if d)


def objects(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [d for d in render(overlay) if d["kind"] == kind]


def one(overlay: str, kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in objects(overlay, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"{overlay}: expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


@cache
def crd_schema(kind: str) -> dict[str, Any]:
    path = crd_dir() / STRIMZI_KINDS[kind]
    if not path.is_file():
        pytest.fail(f"Strimzi {strimzi_version()} CRD for {kind} missing at {path.relative_to(ROOT)}: {INSTALL}")
    crd = yaml.safe_load(path.read_text())
    assert crd["spec"]["group"] == STRIMZI_GROUP and crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v["served"]]
    return {"version": version["name"], "schema": version["schema"]["openAPIV3Schema"]}


def test_kustomize_is_the_pinned_release():
    if not KUSTOMIZE.is_file():
        pytest.fail(f"kustomize is not installed at {KUSTOMIZE.relative_to(ROOT)}: {INSTALL}")
    out = subprocess.run([str(KUSTOMIZE), "version"], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == KUSTOMIZE_VERSION
    assert f"KUSTOMIZE_VERSION={KUSTOMIZE_VERSION}" in (K8S / "tools" / "install.sh").read_text()


# --- rendering and schemas -------------------------------------------------------------------
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders(overlay):
    kinds = sorted(d["kind"] for d in render(overlay))
    for kind in ("KafkaConnect", "KafkaConnector", "KafkaTopic", "KafkaUser", "StatefulSet", "Service",
                 "ServiceAccount", "NetworkPolicy"):
        assert kind in kinds, f"{overlay}: no {kind}"
    expected_ns = {"dev": "relay-dev", "prod": "relay"}[overlay]
    assert {d["metadata"].get("namespace") for d in render(overlay)} == {expected_ns}
    assert not [d for d in render(overlay) if d["kind"] == "Secret"], "Secrets are supplied, never rendered"


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_builtin_objects_validate_against_kubernetes_schemas(overlay, version):
    builtin = [d for d in render(overlay) if not d["apiVersion"].startswith(STRIMZI_GROUP + "/")]
    assert builtin
    problems = []
    for d in builtin:
        try:  # strict: an unknown field is an error, not silently dropped
            kubernetes_validate.validate(d, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{d['kind']}/{d['metadata']['name']}: {'.'.join(map(str, exc.path))}: {exc.message}")
    assert not problems, "\n".join(problems)


LOGIC = ("oneOf", "anyOf", "allOf", "not")


def strict(schema: Any, structural: bool = True) -> Any:
    """A CRD schema as the API server's strict field validation applies it: an object with declared
    properties and no x-kubernetes-preserve-unknown-fields takes no other field. (Branches of
    oneOf/anyOf/allOf/not only constrain values of the structural schema: left as they are.)"""
    if isinstance(schema, list):
        return [strict(s, structural) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v, structural and k not in LOGIC) for k, v in schema.items()}
    if (structural and "properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def _missing_or(value: dict[str, Any], key: str, test: Callable[[Any], bool]) -> bool:
    return key in value and test(value[key])


# The CRDs' CEL rules (x-kubernetes-validations), which JSON Schema cannot express: each one that
# applies to an object is evaluated here; a rule not in this table that applies fails the test.
CEL: dict[str, Callable[[dict[str, Any]], bool]] = {
    "self.type == 'tls' || (!has(self.validityDays) && !has(self.renewalDays))":
        lambda s: s["type"] == "tls" or ("validityDays" not in s and "renewalDays" not in s),
    "self.type != 'tls' || (has(self.renewalDays) == has(self.validityDays))":
        lambda s: s["type"] != "tls" or (("renewalDays" in s) == ("validityDays" in s)),
    "self.type != 'tls' || !has(self.renewalDays) || !has(self.validityDays) || self.renewalDays < self.validityDays":
        lambda s: s["type"] != "tls" or "renewalDays" not in s or "validityDays" not in s
        or s["renewalDays"] < s["validityDays"],
    "self.type != 'jmxPrometheusExporter' || has(self.valueFrom)":
        lambda s: s["type"] != "jmxPrometheusExporter" or "valueFrom" in s,
    '(has(self.type) && self.type != "topology-label") || self.topologyKey != ""':
        lambda s: ("type" in s and s["type"] != "topology-label") or _missing_or(s, "topologyKey", lambda v: v != ""),
    'has(self.type) == false || self.type != "environment-variable" || self.envVarName != ""':
        lambda s: "type" not in s or s["type"] != "environment-variable"
        or _missing_or(s, "envVarName", lambda v: v != ""),
}


def cel_problems(schema: Any, value: Any, where: str = "") -> list[str]:
    out = []
    if isinstance(schema, dict):
        for rule in schema.get("x-kubernetes-validations", []):
            check = CEL.get(rule["rule"])
            if check is None:
                out.append(f"{where}: CEL rule not evaluated by this test, add it to CEL: {rule['rule']}")
            elif not check(value):
                out.append(f"{where}: {rule['message']}")
        if isinstance(value, dict):
            for key, sub in value.items():
                if key in schema.get("properties", {}):
                    out += cel_problems(schema["properties"][key], sub, f"{where}.{key}")
        if isinstance(value, list) and isinstance(schema.get("items"), dict):
            for i, sub in enumerate(value):
                out += cel_problems(schema["items"], sub, f"{where}[{i}]")
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_strimzi_objects_validate_against_strimzi_crds(overlay):
    strimzi = [d for d in render(overlay) if d["apiVersion"].startswith(STRIMZI_GROUP + "/")]
    assert {d["kind"] for d in strimzi} == set(STRIMZI_KINDS)
    problems = []
    for d in strimzi:
        crd = crd_schema(d["kind"])
        assert d["apiVersion"] == f"{STRIMZI_GROUP}/{crd['version']}", "the version the CRD serves"
        validator = jsonschema.Draft4Validator(strict(crd["schema"]))
        name = f"{d['kind']}/{d['metadata']['name']}"
        problems += [f"{name}: {'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(d)]
        problems += [f"{name}: {p}" for p in cel_problems(crd["schema"], d)]
    assert not problems, "\n".join(problems)


def test_strict_crd_validation_catches_a_misspelled_field():
    bad = copy.deepcopy(one("dev", "KafkaConnector"))
    bad["spec"]["autoRestart"]["enable"] = True
    errors = list(jsonschema.Draft4Validator(strict(crd_schema("KafkaConnector")["schema"])).iter_errors(bad))
    assert any("enable" in e.message for e in errors)
    user = copy.deepcopy(one("dev", "KafkaUser", M.CONNECT_USER))
    user["spec"]["authentication"]["validityDays"] = 30
    assert cel_problems(crd_schema("KafkaUser")["schema"], user)


# --- generated files -------------------------------------------------------------------------
def test_generated_manifests_are_current():
    stale = M.stale()
    assert not stale, f"k8s/base/generated/{stale} out of date: run .venv/bin/python k8s/tools/manifests.py"


# --- topics ----------------------------------------------------------------------------------
def k8s_settings() -> Settings:
    return load_settings(M.K8S_ENV)


def expected_topics(s: Settings) -> set[str]:
    from relay.examples.orders import APP_ID, TOPIC

    stages = range(1, len(s.retry_delays.split(",")) + 1)
    return ({event_topic(t) for t in s.aggregate_types} | {TOPIC, dlq_topic(TOPIC), OUTBOX_DLQ_TOPIC}
            | {retry_topic(TOPIC, n) for n in stages} | {changelog_topic(APP_ID, "parked-order")})


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_topics_agree_with_the_code(overlay):
    s = k8s_settings()
    topics = {t["spec"]["topicName"]: t for t in objects(overlay, "KafkaTopic")}
    assert set(topics) == expected_topics(s)
    worker = M.worker_topics("orders", s)
    assert set(worker.declared) <= set(topics), "every topic the worker declares"
    for name, t in topics.items():
        spec, config = t["spec"], t["spec"]["config"]
        assert t["metadata"]["labels"]["strimzi.io/cluster"] == M.KAFKA_CLUSTER
        # the same partitions for all: changelogs are co-partitioned with their source
        assert spec["partitions"] == s.topic_partitions, name
        assert spec["replicas"] == s.topic_replication, name
        assert int(config["max.message.bytes"]) == s.max_record_bytes, name
        assert int(config["min.insync.replicas"]) < spec["replicas"], name
        if name in worker.changelogs:
            assert config == {**config, **worker.changelogs[name]}, "the worker's own changelog configs"
            assert "compact" in config["cleanup.policy"]
        else:
            assert config["cleanup.policy"] == "delete" and int(config["retention.ms"]) > 0, name
    assert topics[OUTBOX_DLQ_TOPIC]["spec"]["config"]["retention.ms"] == str(M.RETENTION_MS["dlq"])
    assert all(n.startswith(EVENT_TOPIC_PREFIX) for n in worker.reads)


def test_topic_settings_of_connector_worker_and_topics_agree():
    """Topics the connector or a worker create when missing get what the KafkaTopics declare."""
    s = k8s_settings()
    config = one("prod", "KafkaConnector")["spec"]["config"]
    assert config["topic.creation.default.partitions"] == str(s.topic_partitions)
    assert config["topic.creation.default.replication.factor"] == str(s.topic_replication)
    env = plain_env(one("prod", "StatefulSet", "relay-orders"))
    assert env["RELAY_TOPIC_PARTITIONS"] == str(s.topic_partitions)
    assert env["RELAY_TOPIC_REPLICATION"] == str(s.topic_replication)


# --- the connector ---------------------------------------------------------------------------
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_connector_config_is_what_relay_connectors_render_prints(overlay):
    connector = one(overlay, "KafkaConnector")
    s = k8s_settings()
    rendered = render_outbox_connector(s)
    spec = connector["spec"]
    assert connector["metadata"]["name"] == s.connector_name
    assert connector["metadata"]["labels"]["strimzi.io/cluster"] == one(overlay, "KafkaConnect")["metadata"]["name"]
    assert spec["class"] == rendered.pop("connector.class")
    assert spec["tasksMax"] == int(rendered.pop("tasks.max"))
    assert spec["config"] == rendered
    assert spec["autoRestart"] == {"enabled": True}
    # transactional heartbeat: moves the slot even when the outbox is idle
    assert spec["config"]["heartbeat.action.query"] == s.heartbeat_action_query
    assert "pg_logical_emit_message(true," in spec["config"]["heartbeat.action.query"]
    # only the Kubernetes host, port, secrets file and replication differ from the native stack's render
    native = render_outbox_connector(load_settings({}))
    differ = {k for k in native if native[k] != {**rendered, "connector.class": native["connector.class"],
                                                   "tasks.max": native["tasks.max"]}.get(k)}
    assert differ <= M.K8S_SPECIFIC_CONNECTOR_KEYS
    assert set(native) == set(rendered) | {"connector.class", "tasks.max"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_connector_password_is_a_reference_to_the_mounted_secret(overlay):
    connect = one(overlay, "KafkaConnect")
    password = one(overlay, "KafkaConnector")["spec"]["config"]["database.password"]
    assert password == f"${{file:{M.PG_CDC_MOUNT}/secrets.properties:pg.password}}"
    volumes = {v["name"]: v for v in connect["spec"]["template"]["pod"]["volumes"]}
    mounts = connect["spec"]["template"]["connectContainer"]["volumeMounts"]
    (mount,) = [m for m in mounts if m["mountPath"] == M.PG_CDC_MOUNT]
    assert volumes[mount["name"]]["secret"]["secretName"] == M.PG_CDC_SECRET
    config = connect["spec"]["config"]
    assert "file" in config["config.providers"].split(",")
    assert config["config.providers.file.class"] == "org.apache.kafka.common.config.provider.FileConfigProvider"


# --- Kafka Connect ---------------------------------------------------------------------------
def pom_versions() -> tuple[str, str]:
    pom = (ROOT / "connectors" / "pom.xml").read_text()

    def prop(name: str) -> str:
        return pom.split(f"<{name}>")[1].split(f"</{name}>")[0]

    return prop("kafka.version"), prop("debezium.version")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_connect_matches_the_native_worker(overlay):
    from relay.stack.connect import POSTGRES_CONNECTOR_CLASS

    connect = one(overlay, "KafkaConnect")
    spec, config = connect["spec"], connect["spec"]["config"]
    kafka_version, debezium_version = pom_versions()
    assert connect["metadata"]["name"] == M.CONNECT_CLUSTER
    assert connect["metadata"]["annotations"]["strimzi.io/use-connector-resources"] == "true"
    assert spec["version"] == kafka_version
    (plugin,) = spec["build"]["plugins"]
    assert plugin["artifacts"] == [{"type": "maven", "group": "io.debezium", "artifact": "debezium-connector-postgres",
                                    "version": debezium_version}]
    assert one(overlay, "KafkaConnector")["spec"]["class"] == POSTGRES_CONNECTOR_CLASS
    assert config["exactly.once.source.support"] == "enabled"
    assert config["topic.creation.enable"] is True or config["topic.creation.enable"] == "true"
    assert spec["groupId"] == CONNECT_GROUP
    assert {spec["configStorageTopic"], spec["offsetStorageTopic"], spec["statusStorageTopic"]} == set(
        M.CONNECT_INTERNAL_TOPICS.values())
    assert spec["authentication"]["type"] == "scram-sha-512"
    assert spec["authentication"]["username"] == M.CONNECT_USER
    assert spec["authentication"]["passwordSecret"] == {"secretName": M.CONNECT_USER, "password": "password"}
    assert spec["tls"]["trustedCertificates"] == [{"secretName": f"{M.KAFKA_CLUSTER}-cluster-ca-cert",
                                                   "certificate": "ca.crt"}]
    assert spec["bootstrapServers"] == f"{M.KAFKA_CLUSTER}-kafka-bootstrap.{M.KAFKA_NAMESPACE}.svc:9093"


def test_client_override_policy_allows_exactly_the_connector_overrides():
    """Allowlist (KIP-1188, Kafka >= 4.2) with the client settings the rendered connector
    overrides, the same list as the native stack's worker."""
    from relay.config import load_settings as native
    from relay.stack.connect import ConnectPart

    config = one("prod", "KafkaConnect")["spec"]["config"]
    allowlist = M.connect_override_allowlist(render_outbox_connector(k8s_settings()))
    assert {"metadata.max.idle.ms", "fetch.max.wait.ms", "max.request.size", "transaction.timeout.ms"} == set(allowlist)
    assert config["connector.client.config.override.policy"] == "Allowlist"
    assert sorted(config["connector.client.config.override.allowlist"].split(",")) == allowlist
    worker = ConnectPart(native({}))._properties()
    assert f"connector.client.config.override.allowlist={','.join(allowlist)}" in worker


# --- users and ACLs --------------------------------------------------------------------------
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_users_carry_exactly_the_acls_of_the_data(overlay):
    users = {u["metadata"]["name"]: u for u in objects(overlay, "KafkaUser")}
    expected = M.acls(k8s_settings())
    assert set(users) == set(expected)
    for name, user in users.items():
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert user["spec"]["authorization"]["type"] == "simple"
        assert M.expand_strimzi_acls(name, user["spec"]["authorization"]["acls"]) == sorted(expected[name])


def allowed(grants: list[Any], resource: str, name: str, op: str) -> bool:
    return any(a.resource == resource and a.op == op
               and (a.name == name if a.pattern == "literal" else name.startswith(a.name)) for a in grants)


def test_worker_acls_cover_what_the_worker_does_and_no_more():
    s = k8s_settings()
    grants = M.acls(s)["relay-orders"]
    w = M.worker_topics("orders", s)
    assert allowed(grants, "group", w.group, "Read")
    for topic in w.reads:
        assert allowed(grants, "topic", topic, "Read"), topic
    for topic in w.writes:
        assert allowed(grants, "topic", topic, "Write") and allowed(grants, "topic", topic, "Create"), topic
    for topic in w.declared:  # relay.topics.apply_topics checks every declared topic's max.message.bytes
        assert allowed(grants, "topic", topic, "DescribeConfigs"), topic
    # never: write its source (events come from the outbox), another aggregate type's topics, the cluster
    assert not allowed(grants, "topic", event_topic("order"), "Write")
    assert not allowed(grants, "topic", event_topic("order.item"), "Read")
    assert not any(a.resource in ("cluster", "transactionalId") for a in grants)
    assert all(a.pattern == "literal" for a in grants)


def test_connect_acls_cover_exactly_once_source():
    s = k8s_settings()
    grants = M.acls(s)[M.CONNECT_USER]
    for topic in M.CONNECT_INTERNAL_TOPICS.values():
        for op in ("Read", "Write", "Create", "DescribeConfigs"):
            assert allowed(grants, "topic", topic, op), (topic, op)
    for topic in (event_topic("order"), event_topic("a-new-type"), heartbeat_topic(s)):
        assert allowed(grants, "topic", topic, "Write") and allowed(grants, "topic", topic, "Create"), topic
        assert not allowed(grants, "topic", topic, "Read"), topic
    assert allowed(grants, "group", CONNECT_GROUP, "Read")
    # transactional ids: each task's producer <group>-<connector>-<task>, the leader's connect-cluster-<group>
    assert allowed(grants, "transactionalId", f"{CONNECT_GROUP}-{s.connector_name}-0", "Write")
    assert allowed(grants, "transactionalId", f"connect-cluster-{CONNECT_GROUP}", "Write")
    assert allowed(grants, "cluster", "kafka-cluster", "IdempotentWrite")
    assert allowed(grants, "cluster", "kafka-cluster", "Describe")
    assert not allowed(grants, "topic", OUTBOX_DLQ_TOPIC, "Write")


# --- the workers -----------------------------------------------------------------------------
def container(sts: dict[str, Any]) -> dict[str, Any]:
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    return c


def plain_env(sts: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(sts)["env"] if "value" in e}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_env_names_are_settings_and_secrets_are_references(overlay):
    sts = one(overlay, "StatefulSet", "relay-orders")
    env = container(sts)["env"]
    known = {ENV_PREFIX + f.upper() for f in Settings.model_fields}
    for e in env:
        assert e["name"] in known, f"{e['name']}: not a Settings field"
        if e["name"].endswith("_FILE"):  # a secret mounted as a file: the path of a Secret volume's item
            mounted = {m["mountPath"] for m in container(sts)["volumeMounts"]}
            assert any(e["value"].startswith(p + "/") for p in mounted), e
        elif any(word in e["name"] for word in ("PASSWORD", "DSN")):
            assert "secretKeyRef" in e.get("valueFrom", {}), f"{e['name']}: a secret is referenced, never inlined"
    refs = {e["name"]: e["valueFrom"] for e in env if "valueFrom" in e}
    assert "RELAY_KAFKA_SASL_PASSWORD" not in refs  # mounted as a file (RELAY_KAFKA_SASL_PASSWORD_FILE)
    assert refs["RELAY_CONSUMER_INSTANCE_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_settings_load(overlay, tmp_path):
    """The worker's environment is a valid configuration (secrets and files stand in)."""
    sts = one(overlay, "StatefulSet", "relay-orders")
    env = plain_env(sts)
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    password = tmp_path / "password"
    password.write_text("x")
    env.update({"RELAY_KAFKA_SSL_CA_FILE": str(ca), "RELAY_KAFKA_SASL_PASSWORD_FILE": str(password),
                "RELAY_PG_DSN": "postgresql://u:p@h:5432/d", "RELAY_CONSUMER_INSTANCE_ID": "relay-orders-0"})
    s = load_settings(env)
    assert s.kafka_security_protocol == "SASL_SSL" and s.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert s.kafka_sasl_username == "relay-orders" == one(overlay, "KafkaUser", "relay-orders")["metadata"]["name"]
    assert s.consumer_engine == "kafka"  # static membership is the kafka engine's
    assert s.bootstrap_servers == one(overlay, "KafkaConnect")["spec"]["bootstrapServers"]
    assert s.max_record_bytes == int(one(overlay, "KafkaTopic", "outbox.event.order")["spec"]["config"]
                                     ["max.message.bytes"])
    assert s.host == "0.0.0.0", "the probes reach the metrics endpoint from outside the pod"
    # the CA file the settings name is where the pod mounts the cluster CA
    mounts = {m["name"]: m["mountPath"] for m in container(sts)["volumeMounts"]}
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert plain_env(sts)["RELAY_KAFKA_SSL_CA_FILE"] == f"{mounts['kafka-ca']}/ca.crt"
    assert volumes["kafka-ca"]["secret"]["secretName"] == f"{M.KAFKA_CLUSTER}-cluster-ca-cert"
    # the SASL password file is the KafkaUser's Secret, mounted
    assert plain_env(sts)["RELAY_KAFKA_SASL_PASSWORD_FILE"] == f"{mounts['kafka-user']}/password"
    assert volumes["kafka-user"]["secret"]["secretName"] == s.kafka_sasl_username


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_probes_hit_the_health_endpoints(overlay):
    sts = one(overlay, "StatefulSet", "relay-orders")
    c = container(sts)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["metrics"] == int(plain_env(sts)["RELAY_WORKER_METRICS_PORT"])
    assert c["livenessProbe"]["httpGet"] == {"path": HEALTH_PATH, "port": "metrics"}
    assert c["startupProbe"]["httpGet"] == {"path": HEALTH_PATH, "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": READY_PATH, "port": "metrics"}
    assert c["args"] == ["relay", "worker", "orders"]
    for key in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][key]), key


@pytest.mark.parametrize("overlay, replicas", [("dev", 1), ("prod", 3)])
def test_worker_rollout_and_disruption(overlay, replicas):
    sts = one(overlay, "StatefulSet", "relay-orders")
    spec = sts["spec"]
    assert spec["replicas"] == replicas
    assert spec["serviceName"] == one(overlay, "Service", "relay-orders")["metadata"]["name"]
    assert one(overlay, "Service", "relay-orders")["spec"]["clusterIP"] == "None"
    assert spec["updateStrategy"]["type"] == "RollingUpdate"
    # a graceful stop: in-flight records, the final commit, leaving the group (relay.consume._kafka.worker)
    shutdown_s = kafka_worker.STOP_WAIT_S * 2 + kafka_worker.CLOSE_WAIT_S
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] > shutdown_s
    # a rolled pod comes back as the same static member before its partitions move
    assert int(plain_env(sts)["RELAY_CONSUMER_SESSION_TIMEOUT_MS"]) >= 30_000
    pdbs = objects(overlay, "PodDisruptionBudget")
    if overlay == "prod":
        (pdb,) = pdbs
        assert pdb["spec"]["maxUnavailable"] == 1
        assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
    else:
        assert not pdbs


def test_prod_is_larger_than_dev():
    def memory_mi(overlay: str) -> int:
        limit = container(one(overlay, "StatefulSet", "relay-orders"))["resources"]["limits"]["memory"]
        return int(limit[:-2]) * (1024 if limit.endswith("Gi") else 1)

    assert memory_mi("prod") > memory_mi("dev")
    assert one("prod", "KafkaConnect")["spec"]["replicas"] > one("dev", "KafkaConnect")["spec"]["replicas"]


# --- network policies ------------------------------------------------------------------------
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_egress_only_to_kafka_postgres_and_dns(overlay):
    policy = one(overlay, "NetworkPolicy", "relay-worker")
    sts = one(overlay, "StatefulSet", "relay-orders")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    egress = policy["spec"]["egress"]
    ports = sorted((p["protocol"], p["port"]) for rule in egress for p in rule["ports"])
    assert ports == [("TCP", 53), ("TCP", 5432), ("TCP", 9093), ("UDP", 53)]
    assert all(rule.get("to") for rule in egress), "every egress rule names its peers"
    kafka_peer = next(r["to"][0] for r in egress if r["ports"][0]["port"] == 9093)
    assert kafka_peer["podSelector"]["matchLabels"]["strimzi.io/cluster"] == M.KAFKA_CLUSTER
    assert kafka_peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == M.KAFKA_NAMESPACE
    assert plain_env(sts)["RELAY_KAFKA_BOOTSTRAP"].endswith(":9093")
    (ingress,) = policy["spec"]["ingress"]
    assert [p["port"] for p in ingress["ports"]] == [int(plain_env(sts)["RELAY_WORKER_METRICS_PORT"])]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_connect_rest_only_from_connect_itself_and_the_operator(overlay):
    policy = one(overlay, "NetworkPolicy", "relay-connect-rest")
    assert policy["spec"]["podSelector"]["matchLabels"] == {"strimzi.io/cluster": M.CONNECT_CLUSTER,
                                                            "strimzi.io/kind": "KafkaConnect"}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8083}]
    # not the whole namespace: a pod that could POST a connector could have the CDC password sent out
    assert rule["from"][0] == {"podSelector": {"matchLabels": {"strimzi.io/cluster": M.CONNECT_CLUSTER,
                                                               "strimzi.io/kind": "KafkaConnect"}}}
    operator = rule["from"][1]
    assert operator["podSelector"]["matchLabels"] == {"strimzi.io/kind": "cluster-operator"}
