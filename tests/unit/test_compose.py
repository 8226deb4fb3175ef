"""docker-compose.yml describes the native stack: same ports, names, roles and worker properties.

No Docker engine runs on our machines, so the compose file is checked by parsing only: against the
Settings defaults (relay/config.py) and the properties the native parts write (relay/stack/*.py).
The images' env -> property rules are emulated below (apache/kafka; Debezium's connect entrypoint).
The file is also validated against the Compose specification's JSON schema (compose-go's, which
`make test` fetches), and every `relay ...` command in it is resolved against the CLI.
"""

import json
import os
import shlex
from importlib.metadata import entry_points
from pathlib import Path

import jsonschema
import pytest
import yaml

from relay.config import ENV_PREFIX, load_settings
from relay.connect.render import render_outbox_connector
from relay.stack.connect import ConnectPart
from relay.stack.kafka import KafkaPart

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
S = load_settings({})
# Debezium's entrypoint sets these worker properties from short names (and overwrites CONNECT_*)
CONNECT_SHORT = {"BOOTSTRAP_SERVERS": "bootstrap.servers", "GROUP_ID": "group.id",
                 "CONFIG_STORAGE_TOPIC": "config.storage.topic", "OFFSET_STORAGE_TOPIC": "offset.storage.topic",
                 "STATUS_STORAGE_TOPIC": "status.storage.topic", "KEY_CONVERTER": "key.converter",
                 "VALUE_CONVERTER": "value.converter", "OFFSET_FLUSH_INTERVAL_MS": "offset.flush.interval.ms",
                 "ADVERTISED_HOST_NAME": "rest.advertised.host.name", "ADVERTISED_PORT": "rest.advertised.port"}
HOST_SPECIFIC = {"bootstrap.servers", "listeners", "advertised.listeners", "rest.advertised.host.name",
                 "plugin.path", "log.dirs", "listener.security.protocol.map", "inter.broker.listener.name",
                 "controller.quorum.bootstrap.servers"}


def env(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in SERVICES[service].get("environment", {}).items()}


def native(properties: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in properties.splitlines())


def published(service: str) -> dict[int, tuple[str, int]]:
    """container port -> (host address, host port)"""
    rows = [str(p).split(":") for p in SERVICES[service].get("ports", [])]
    return {int(c): (ip, int(h)) for ip, h, c in rows}


def test_services_and_pinned_images():
    assert {"postgres", "kafka", "connect", "setup", "worker", "monitor"} <= set(SERVICES)
    for name, svc in SERVICES.items():
        image = svc["image"]
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), name
    assert SERVICES["kafka"]["image"] == "apache/kafka:4.2.0"
    assert SERVICES["connect"]["image"] == "quay.io/debezium/connect:3.5.0.Final"


@pytest.mark.parametrize("service, port", [
    ("postgres", S.pg_port), ("kafka", S.kafka_port), ("kafka", S.kafka_controller_port),
    ("connect", S.connect_port), ("worker", S.worker_metrics_port), ("monitor", S.monitor_metrics_port)])
def test_published_ports_equal_native_defaults_on_loopback(service, port):
    assert published(service)[port] == ("127.0.0.1", port)


def test_postgres_database_roles_and_logical_decoding():
    pg = env("postgres")
    assert pg["POSTGRES_DB"] == S.pg_database and pg["PGPORT"] == str(S.pg_port)
    args = SERVICES["postgres"]["command"]
    settings = dict(a.split("=", 1) for a in args if "=" in a)
    assert settings == {"port": str(S.pg_port), "wal_level": "logical", "max_replication_slots": "10",
                        "max_wal_senders": "10", "max_slot_wal_keep_size": "4GB", "wal_writer_delay": "10ms",
                        "max_connections": "100"}
    init = (ROOT / "connectors" / "compose-init.sql").read_text()
    assert any(v.endswith(":/docker-entrypoint-initdb.d/10-relay-roles.sql:ro")
               for v in SERVICES["postgres"]["volumes"])
    for needle in (f"ROLE {S.pg_user} LOGIN PASSWORD '{S.pg_password.get_secret_value()}'", f"OWNER TO {S.pg_user}",
                   f"ROLE {S.pg_cdc_user} LOGIN REPLICATION PASSWORD '{S.pg_cdc_password.get_secret_value()}'",
                   f"CONNECT ON DATABASE {S.pg_database} TO {S.pg_cdc_user}",
                   f"USAGE ON SCHEMA public TO {S.pg_cdc_user}"):
        assert needle in init


def test_kafka_properties_match_native_single_node_settings():
    props = {k[len("KAFKA_"):].lower().replace("_", "."): v for k, v in env("kafka").items()
             if k.startswith("KAFKA_") and k != "KAFKA_HEAP_OPTS"}
    for key, value in native(KafkaPart(S)._properties()).items():
        if key not in HOST_SPECIFIC:
            assert props.get(key) == value, key
    assert f"://127.0.0.1:{S.kafka_port}" in props["advertised.listeners"]
    assert f":{S.kafka_controller_port}" in props["controller.quorum.voters"]


def test_connect_worker_properties_match_native():
    props = {CONNECT_SHORT[k]: v for k, v in env("connect").items() if k in CONNECT_SHORT}
    props |= {k[len("CONNECT_"):].lower().replace("_", "."): v for k, v in env("connect").items()
              if k.startswith("CONNECT_")}
    # Debezium's 3.5.0.Final image runs Kafka 4.1.1: no Allowlist policy there (KIP-1188 is 4.2)
    image_kafka_4_1 = {"connector.client.config.override.policy", "connector.client.config.override.allowlist"}
    for key, value in native(ConnectPart(S)._properties()).items():
        if key not in HOST_SPECIFIC | image_kafka_4_1:
            assert props.get(key) == value, key
    assert props["listeners"].endswith(f":{S.connect_port}")
    assert props["connector.client.config.override.policy"] == "All"


def test_relay_variables_are_real_settings_and_reach_the_services():
    relay_env = {k: v for svc in SERVICES for k, v in env(svc).items() if k.startswith(ENV_PREFIX)}
    load_settings(relay_env)  # raises ConfigError naming any unknown or invalid RELAY_* variable
    setup = load_settings({k: v for k, v in env("setup").items() if k.startswith(ENV_PREFIX)})
    assert setup.dsn == f"postgresql://{S.pg_user}:{S.pg_password.get_secret_value()}@postgres:{S.pg_port}/{S.pg_database}"
    kafka_internal = next(a for a in env("kafka")["KAFKA_ADVERTISED_LISTENERS"].split(",") if "//kafka:" in a)
    assert setup.bootstrap_servers == kafka_internal.split("//")[1] == env("connect")["BOOTSTRAP_SERVERS"]
    assert setup.connect_rest_url == f"http://connect:{S.connect_port}"
    worker = load_settings({k: v for k, v in env("worker").items() if k.startswith(ENV_PREFIX)})
    assert (worker.dsn, worker.bootstrap_servers) == (setup.dsn, setup.bootstrap_servers)
    assert "relay outbox migrate && relay topics apply && relay connectors apply" in SERVICES["setup"]["command"]
    assert SERVICES["worker"]["command"] == ["relay", "worker", "orders"]


def test_connector_rendered_for_compose_reads_the_mounted_secret():
    setup = load_settings({k: v for k, v in env("setup").items() if k.startswith(ENV_PREFIX)})
    cfg = render_outbox_connector(setup)
    assert (cfg["database.hostname"], cfg["database.port"]) == ("postgres", str(S.pg_port))
    mounts = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["connect"]["volumes"]}
    secrets = ROOT / mounts[str(setup.connect_secrets_file)]
    assert cfg["database.password"] == f"${{file:{setup.connect_secrets_file}:pg.password}}"
    assert f"pg.password={S.pg_cdc_password.get_secret_value()}" in secrets.read_text().splitlines()


def test_setup_waits_for_healthy_parts_and_worker_for_setup():
    assert all("healthcheck" in SERVICES[s] for s in ("postgres", "kafka", "connect", "worker"))
    assert SERVICES["setup"]["depends_on"] == {s: {"condition": "service_healthy"}
                                               for s in ("postgres", "kafka", "connect")}
    assert SERVICES["worker"]["depends_on"] == {"setup": {"condition": "service_completed_successfully"}}


# --- the Compose specification and our image ------------------------------------------------------
COMPOSE_SCHEMA = ROOT / ".cache" / "compose-spec.json"  # the Go module compose-go's, fetched by `make test`
IMAGE_SERVICES = [name for name, svc in SERVICES.items() if svc["image"].split(":")[0] == "outbox-relay"]


def test_compose_file_is_valid_against_the_compose_specification():
    if not COMPOSE_SCHEMA.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{COMPOSE_SCHEMA} missing: `make test` fetches it (make .cache/compose-spec.json)")
        pytest.skip("the Compose schema is not fetched: make .cache/compose-spec.json")
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(COMPOSE)]
    assert not errors, errors
    broken = {**COMPOSE, "services": {**SERVICES, "worker": {**SERVICES["worker"], "restart_policy": "always"}}}
    assert list(validator.iter_errors(broken)), "the schema rejects an unknown service key"


def test_our_services_run_one_image_built_from_the_dockerfile():
    assert {"setup", "worker", "monitor"} <= set(IMAGE_SERVICES)
    assert len({SERVICES[s]["image"] for s in IMAGE_SERVICES}) == 1
    # each says how its image is built: compose would otherwise try to pull outbox-relay from a registry
    builds = [SERVICES[s].get("build") for s in IMAGE_SERVICES]
    assert builds and all(b == {"context": ".", "dockerfile": "docker/worker.Dockerfile"} for b in builds)
    assert (ROOT / builds[0]["dockerfile"]).is_file()
    assert SERVICES["setup"]["healthcheck"] == {"disable": True}, "a one-shot: not the image's worker healthcheck"


def relay_commands(service: str) -> list[list[str]]:
    command = SERVICES[service]["command"]
    lines = [part for part in command[2].split("&&")] if command[:2] == ["sh", "-c"] else [shlex.join(command)]
    return [shlex.split(line) for line in lines]


@pytest.mark.parametrize("service", IMAGE_SERVICES)
def test_every_relay_command_exists_with_its_arguments(service):
    import typer.main

    from relay.cli import build

    root = typer.main.get_command(build())
    for argv in relay_commands(service):
        assert argv[0] == "relay", argv
        cmd, rest = root, argv[1:]
        while hasattr(cmd, "commands"):  # a group (typer's click, which may be its own copy)
            assert rest and rest[0] in cmd.commands, f"{service}: no command {' '.join(argv)}"
            cmd, rest = cmd.commands[rest[0]], rest[1:]
        cmd.make_context(" ".join(argv), list(rest))  # unknown options or missing arguments raise
        if argv[1] == "worker":
            assert rest[0] in entry_points(group="relay.consumers").names, f"no consumer {rest[0]!r}"


@pytest.mark.parametrize("service, setting", [("worker", "worker_metrics_port"), ("monitor", "monitor_metrics_port")])
def test_served_endpoints_bind_all_interfaces_and_are_health_checked(service, setting):
    s = load_settings({k: v for k, v in env(service).items() if k.startswith(ENV_PREFIX)})
    port = getattr(s, setting)
    assert s.host == "0.0.0.0" and published(service)[port] == ("127.0.0.1", port)
    assert f"http://127.0.0.1:{port}/healthz" in " ".join(SERVICES[service]["healthcheck"]["test"])

