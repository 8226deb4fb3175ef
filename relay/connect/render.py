"""Render the Debezium outbox connector config from its template in connectors/.

Template placeholders are ``{{name}}``; Connect's own ``${provider:path:key}`` references and
EventRouter's ``${routedByValue}`` pass through untouched. Keys starting with ``_`` are comments.
An unknown placeholder is an error (a typo must not reach Connect as a literal).
The rendered config never contains the database password: it references the secrets file
through Connect's ``file`` config provider.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from relay.config import Settings, project_root
from relay.errors import ConfigError

_PLACEHOLDER = re.compile(r"\{\{([a-z_]+)\}\}")


def template_path(name: str = "outbox-connector.json") -> Path:
    return project_root() / "connectors" / name


def template_values(settings: Settings, secrets_file: Path) -> dict[str, str]:
    return {
        "pg_host": settings.connector_pg_host or settings.host,
        "pg_port": str(settings.pg_port),
        "pg_cdc_user": settings.pg_cdc_user,
        "pg_database": settings.pg_database,
        "secrets_file": str(secrets_file),
        "topic_prefix": settings.topic_prefix,
        "slot_name": settings.slot_name,
        "publication": settings.publication,
        "poll_interval_ms": str(settings.poll_interval_ms),
        "max_batch_size": str(settings.max_batch_size),
        "max_queue_size": str(settings.max_queue_size),
        "snapshot_mode": settings.snapshot_mode,
        "offset_mismatch_strategy": settings.offset_mismatch_strategy,
        "heartbeat_action_query": settings.heartbeat_action_query,
        "route_by_field": settings.route_by_field,
        "tombstone_on_empty_payload": str(settings.tombstone_on_empty_payload).lower(),
        "heartbeat_interval_ms": str(settings.heartbeat_interval_ms),
        "topic_replication": str(settings.topic_replication),
        "topic_partitions": str(settings.topic_partitions),
        "max_record_bytes": str(settings.max_record_bytes),
        "transaction_timeout_ms": str(settings.transaction_timeout_ms),
    }


def render(template: dict[str, str], values: dict[str, str]) -> dict[str, str]:
    missing: list[str] = []

    def fill(match: re.Match[str]) -> str:
        if match[1] not in values:
            missing.append(match[1])
            return match[0]
        return values[match[1]]

    rendered = {
        key: _PLACEHOLDER.sub(fill, str(value))
        for key, value in template.items()
        if not key.startswith("_")
    }
    if missing:
        raise ConfigError(
            f"connector template placeholder {{{{{name}}}}}: no such value; known: {sorted(values)}"
            for name in sorted(set(missing))
        )
    return rendered


def render_outbox_connector(settings: Settings) -> dict[str, str]:
    from relay.stack.connect import ConnectPart

    secrets = settings.connect_secrets_file or ConnectPart(settings).secrets_file
    template = json.loads(template_path().read_text(encoding="utf-8"))
    config = render(template, template_values(settings, secrets))
    # TLS to Postgres only when asked for: unset keeps Debezium's own default
    if settings.pg_sslmode is not None:
        config["database.sslmode"] = settings.pg_sslmode
    if settings.pg_ssl_root_cert is not None:
        config["database.sslrootcert"] = str(settings.pg_ssl_root_cert)
    return config


OVERRIDE_PREFIXES = ("producer.override.", "consumer.override.", "admin.override.")


def override_allowlist(config: dict[str, str]) -> list[str]:
    """The client settings a connector config overrides (``producer.override.X`` -> ``X``): what
    the worker's ``connector.client.config.override.allowlist`` must hold (Allowlist policy)."""
    return sorted({key[len(p):] for key in config for p in OVERRIDE_PREFIXES if key.startswith(p)})
