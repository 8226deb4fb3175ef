"""Settings: declared once, typed, defaulted, read from ``RELAY_*`` environment variables.

Contract:
- every setting has a type and a default, and is documented here and nowhere else;
- ``load_settings()`` validates everything at once and raises :class:`relay.errors.ConfigError`
  listing *every* problem (wrong types, bad ranges, and misspelled ``RELAY_*`` variables, which
  are errors rather than silently ignored);
- addresses of the stack (Postgres DSN, Kafka bootstrap servers, Connect URL) are derived from
  the native-stack ports unless set explicitly, so a user's own Postgres/Kafka/Connect can be used
  by setting ``RELAY_PG_DSN`` / ``RELAY_KAFKA_BOOTSTRAP`` / ``RELAY_CONNECT_URL``.

Default ports deliberately avoid the standard ones (5432, 9092, 8083) so that a user's own
services do not clash with the dev stack.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any, Literal, Mapping
from urllib.parse import quote

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from relay.crashpoints import CrashPoint
from relay.errors import ConfigError
from relay.headers import AGGREGATE_TYPE_RE, colliding
from relay.secrets import mask_dsn

ENV_PREFIX = "RELAY_"

# room for what a record carries besides the event (ids, type, dlq.*/retry.* headers, framing)
RECORD_OVERHEAD_BYTES = 64 * 1024

SnapshotMode = Literal["no_data", "initial", "always", "when_needed", "never"]


def project_root() -> Path:
    """The checkout this package runs from (editable install), else the working directory."""
    here = Path(__file__).resolve().parents[1]
    if (here / "connectors" / "pom.xml").is_file():
        return here
    return Path.cwd()


KAFKA_ENGINE_BATCH = 100  # the kafka engine's default RELAY_CONSUMER_BATCH_SIZE


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    # --- native stack: where it lives and which loopback ports it uses --------------------
    stack_dir: Path = Field(default_factory=lambda: project_root() / ".stack",
                            description="state of the native stack: data, logs, pid files")
    cache_dir: Path = Field(default_factory=lambda: project_root() / ".cache",
                            description="downloads: Maven repo, jars")
    host: str = Field("127.0.0.1", description="address every part of the native stack binds to")
    pg_port: int = Field(55432, ge=1024, le=65535)
    stack_security: Literal["plaintext", "sasl_ssl"] = Field(
        "plaintext", description="how the native stack's broker listens: plaintext, or sasl_ssl (TLS with a CA "
                                 "of its own, SCRAM users, ACLs; see docs/security.md); fixed when its data is made")
    kafka_port: int = Field(59092, ge=1024, le=65535)
    kafka_controller_port: int = Field(59093, ge=1024, le=65535)
    connect_port: int = Field(58083, ge=1024, le=65535)
    kafka_heap: str = Field("512m", pattern=r"^\d+[mg]$")
    connect_heap: str = Field("512m", pattern=r"^\d+[mg]$")
    run_as: str = Field("nobody", description="unprivileged user Postgres runs as when we are root")
    up_timeout_s: float = Field(120.0, gt=0)

    # --- Postgres --------------------------------------------------------------------------
    pg_database: str = "relay"
    pg_user: str = Field("relay", description="application role: owns the outbox")
    pg_password: SecretStr = Field(SecretStr("relay"), description="application role's password (never printed)")
    pg_cdc_user: str = Field("relay_cdc", description="least-privilege replication role for Debezium")
    pg_cdc_password: SecretStr = Field(SecretStr("cdc-dev-secret"),
                                       description="never printed: Connect reads it via a config provider")
    pg_dsn: SecretStr | None = Field(None, description="overrides the DSN derived from the native stack "
                                                       "(shown with **** for the password)")
    pg_sslmode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] | None = Field(
        None, description="TLS to Postgres for every client of ours and Debezium (libpq's sslmode; verify-full "
                          "checks the CA and the host name); unset: libpq's default (prefer), Debezium's own")
    pg_ssl_root_cert: Path | None = Field(None, description="the CA certificate (PEM) Postgres' certificate is "
                                          "checked against (verify-ca, verify-full)")

    # --- Kafka / Connect -------------------------------------------------------------------
    kafka_bootstrap: str | None = Field(None, description="overrides host:kafka_port")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how every Kafka client of ours connects (relay.kafka_security builds each "
                                 "client's settings from these); the native stack listens in PLAINTEXT unless "
                                 "RELAY_STACK_SECURITY=sasl_ssl")
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] | None = Field(
        None, description="SASL_*: the mechanism (SCRAM credentials are created with Kafka's admin API)")
    kafka_sasl_username: str | None = Field(None, min_length=1, description="SASL_*: the user")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL_*: the password (never printed; "
                                                  "or RELAY_KAFKA_SASL_PASSWORD_FILE)")
    kafka_sasl_password_file: Path | None = Field(None, description="SASL_*: a file holding the password "
                                                  "(a mounted Kubernetes Secret)")
    kafka_ssl_ca_file: Path | None = Field(None, description="SSL/SASL_SSL: the CA certificate (PEM) the brokers' "
                                           "certificates are checked against; unset: the system's")
    kafka_ssl_cert_file: Path | None = Field(None, description="SSL: this client's certificate (PEM), for mutual TLS")
    kafka_ssl_key_file: Path | None = Field(None, description="SSL: this client's private key (PEM)")
    kafka_ssl_key_password: SecretStr | None = Field(None, description="the private key's password (never printed)")
    connect_url: str | None = Field(None, description="overrides http://host:connect_port")
    connect_username: str | None = Field(None, min_length=1, description="HTTP basic auth on Connect's REST API "
                                         "(BasicAuthSecurityRestExtension): the user")
    connect_password: SecretStr | None = Field(None, description="its password (never printed; or "
                                               "RELAY_CONNECT_PASSWORD_FILE)")
    connect_password_file: Path | None = Field(None, description="a file holding that password")
    topic_partitions: int = Field(3, ge=1, le=1000)
    topic_replication: int = Field(1, ge=1)
    aggregate_types: list[str] = Field(["order"], description="topics `relay topics apply` declares "
                                       "(comma-separated in RELAY_AGGREGATE_TYPES)")

    max_event_bytes: int = Field(
        1_000_000, ge=1024, le=100 * 2**20,
        description="largest outbox event (payload + aggregate id + headers, as published) any writer may "
                    "commit; held by the writer and the database, and every topic and producer on the way "
                    "is configured to carry it (plus RECORD_OVERHEAD_BYTES for ids and headers)")

    # --- outbox connector (Debezium PostgresConnector + EventRouter) -----------------------
    connector_name: str = "relay-outbox"
    connector_pg_host: str | None = Field(None, description="Postgres host as Connect sees it (default: host)")
    connect_secrets_file: Path | None = Field(
        None, description="properties file with pg.password, as the Connect worker sees it "
                          "(default: stack_dir/connect/secrets.properties)")
    topic_prefix: str = Field("relay", pattern=r"^[A-Za-z0-9._-]+$")
    slot_name: str = Field("relay_outbox", pattern=r"^[a-z0-9_]+$")
    publication: str = Field("relay_outbox", pattern=r"^[a-z0-9_]+$")
    snapshot_mode: SnapshotMode = Field(
        "no_data", description="no_data: stream from the slot's position; the outbox is not a table to re-read")
    offset_mismatch_strategy: Literal["trust_offset", "no_validation", "trust_slot", "trust_greater_lsn"] = Field(
        "trust_offset", description="trust_offset: a slot that is ahead of the stored offset (dropped and "
                                    "recreated) fails the task instead of skipping the events in between")
    poll_interval_ms: int = Field(
        5, ge=1, description="Debezium's poll.interval.ms, waited twice between a commit and Kafka: the WAL reader "
                             "sleeps this long when the slot had nothing, and the task's poll returns after this "
                             "long unless max_batch_size records are queued (Debezium 3.5). Each poll that returns "
                             "records is one exactly-once Kafka transaction. At half the maximum rate, commit -> Kafka "
                             "p50 was ~45 ms with 50 ms and ~10 ms with 2 ms. 5 ms, not 2: polling every 2 ms kept "
                             "an idle Connect worker ~0.3 core busy on a 2-core machine and cost ~0.07 core more "
                             "than 5 ms under the saga benchmark. Debezium's 500 ms default costs ~0.6 s")
    heartbeat_interval_ms: int = Field(5000, ge=0, description="0 disables heartbeats (idle slots then pin WAL)")
    heartbeat_action_query: str = Field(
        "SELECT pg_logical_emit_message(true, 'heartbeat', now()::varchar)",
        description="transactional logical message: moves the slot even when the outbox is idle")
    route_by_field: str = Field("aggregatetype", pattern=r"^[a-z_][a-z0-9_]*$",
                                description="outbox column whose value names the topic")
    tombstone_on_empty_payload: bool = Field(
        False, description="NULL payload -> Kafka tombstone (compaction deletes the key) instead of a "
                           "record with a null value and headers")
    transaction_timeout_ms: int = Field(
        15_000, ge=1000, le=900_000,
        description="the connector's producer transaction.timeout.ms (one transaction per poll, milliseconds "
                    "long): a task that failed on a record is reported FAILED only after its open transaction "
                    "times out (Kafka's 60 s default kept it RUNNING in the REST API for 61 s here)")
    connect_settle_s: float = Field(5.0, ge=0, description="`connectors apply|resume|restart` report success "
                                    "only after the task stayed RUNNING and read the slot this long")
    max_batch_size: int = Field(2048, ge=1)
    max_queue_size: int = Field(8192, ge=1)

    # --- polling relay (`relay outbox poll`), the fallback with the same contract -----------
    poller_batch_size: int = Field(500, ge=1, le=100_000)
    poller_interval_s: float = Field(1.0, gt=0, description="poll when no NOTIFY arrived for this long")
    poller_max_attempts: int = Field(10, ge=1, description="failed publishes before a row is terminal")
    poller_metrics_port: int = Field(59465, ge=0, le=65535, description="0 disables the endpoint")
    monitor_metrics_port: int = Field(59466, ge=0, le=65535,
                                      description="`relay outbox stats --serve` (slot guardian gauges)")

    # --- workers ---------------------------------------------------------------------------
    worker_metrics_port: int = Field(59464, ge=0, le=65535, description="0 disables the endpoint")
    worker_data_dir: Path | None = Field(None, description="faust table data; default stack_dir/faust")
    retry_delays: str = Field("1s,10s,1m,10m", pattern=r"^\s*\d+(\.\d+)?(ms|s|m|h)(\s*,\s*\d+(\.\d+)?(ms|s|m|h))*\s*$",
                              description="retry ladder: one stage topic <topic>.retry.<n> per delay")
    inbox_window_s: int = Field(7 * 24 * 3600, ge=60, description="dedup window: inbox entries (and their "
                                "changelog records) expire after this long, as NServiceBus' default")
    consumer_concurrency: int = Field(1, ge=1, le=256, description="lanes per agent: records of one key "
                                      "stay on one lane (in order); lanes run concurrently")
    consumer_max_in_flight: int = Field(64, ge=1, le=100_000, description="records taken but unfinished per "
                                        "partition; the agent waits for room (backpressure)")
    breaker_failures: int = Field(5, ge=1, description="consecutive retriable handler failures that open the "
                                  "circuit: consumption pauses, then one probe record")
    breaker_open_s: float = Field(5.0, gt=0, description="first open period; doubles per failed probe, up to 60 s")
    consumer_batch_size: int | None = Field(
        None, ge=1, le=10_000, description="records a lane takes at once when several wait; inbox='postgres' "
        "handles them in one transaction. Unset: 100 on the kafka engine, 1 (off) on the faust engine, which "
        "refuses more (one batch + SIGKILL run lost an event there, not explained yet)")

    # --- saga coordinators: the policy gate ----------------------------------------------
    saga_policy: Path | None = Field(None, description="a policy file (docs/policy.md) every saga coordinator "
                                     "applies before each command it sends, forward and compensation; unset: no "
                                     "gate. Checked at the worker's start: an invalid file stops it, every problem "
                                     "listed")
    policy_env: str = Field("production", min_length=1, description="the policy's env fact: the deployment the "
                            "coordinator runs in. production by default, so that production rules hold unless "
                            "a deployment says it is something else")

    saga_evidence: Literal["auto", "on", "off"] = Field(
        "auto", description="saga coordinators chain every run's timeline in saga_evidence and publish chain heads "
                            "to outbox.event.saga-evidence (relay saga verify checks both); auto: on when a policy "
                            "gate is set (RELAY_SAGA_POLICY)")

    crash_at: CrashPoint | None = Field(None, description="tests only: SIGKILL the process when it reaches this "
                                        "crash point (relay.crashpoints, the side-effects article's crash windows); "
                                        "unset in production")

    def batch_size(self) -> int:
        """RELAY_CONSUMER_BATCH_SIZE, or the engine's default (see its description)."""
        if self.consumer_batch_size is not None:
            return self.consumer_batch_size
        return KAFKA_ENGINE_BATCH if self.consumer_engine == "kafka" else 1
    consumer_pool_max: int = Field(16, ge=2, le=1000, description="most Postgres connections a worker's pool "
                                   "opens (inbox='postgres' handlers hold one per running event)")
    consumer_fetch_wait_ms: int = Field(
        500, ge=0, le=300_000, description="consumer_engine=kafka: librdkafka fetch.wait.max.ms, the longest the "
                                           "broker holds a fetch with nothing to return. It does not add latency: "
                                           "the broker answers a waiting read_committed fetch when a transaction "
                                           "commits (10 ms measured the same commit -> handler p50/p99 as 500 ms "
                                           "and only multiplies idle fetch requests)")
    consumer_session_timeout_ms: int = Field(
        10_000, ge=6_000, le=300_000, description="consumer_engine=kafka: the group session timeout; a worker "
                                                  "that sends no heartbeat for this long (killed, hung, cut off) "
                                                  "loses its partitions to the others. Shorter than Kafka's 45 s "
                                                  "default so that a dead worker's partitions move on within "
                                                  "seconds; must lie within the broker's "
                                                  "group.min/max.session.timeout.ms")
    consumer_instance_id: str | None = Field(
        None, min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$",
        description="consumer_engine=kafka: static group membership (Kafka's group.instance.id), unique per worker "
                    "of a group and stable across its restarts (e.g. a StatefulSet pod's name). A restarted worker "
                    "gets its partitions back at once, with no rebalance and no wait for the dead member's "
                    "session to time out; a worker gone for good hands its partitions on after the session "
                    "timeout, also when stopped cleanly (static members do not leave the group)")
    consumer_engine: Literal["kafka", "faust"] = Field("kafka", description="what runs a worker's pipelines: "
                                                       "kafka (confluent-kafka, batched fetches) or faust "
                                                       "(faust-streaming agents); same topics, group, tables and "
                                                       "guarantees, so a group can switch (docs/engines.md)")

    @model_validator(mode="after")
    def _instance_id_needs_the_kafka_engine(self) -> "Settings":
        if self.consumer_instance_id is not None and self.consumer_engine != "kafka":
            raise ValueError(f"consumer_instance_id ({self.consumer_instance_id!r}) is static group membership of "
                             "the kafka engine; expected RELAY_CONSUMER_ENGINE=kafka, or no instance id")
        return self

    @model_validator(mode="after")
    def _kafka_security_is_whole(self) -> "Settings":
        from relay.kafka_security import problems  # the rules live with the builder

        found = problems(self)
        if found:
            raise ValueError("; ".join(found))
        return self

    @model_validator(mode="after")
    def _pg_root_cert_exists(self) -> "Settings":
        cert = self.pg_ssl_root_cert
        if cert is not None and not cert.is_file():
            raise ValueError(f"RELAY_PG_SSL_ROOT_CERT = {str(cert)!r}: no such file; expected a readable PEM file")
        if cert is not None and self.pg_sslmode in (None, "disable"):
            raise ValueError(f"RELAY_PG_SSL_ROOT_CERT is set with RELAY_PG_SSLMODE = {self.pg_sslmode!r}; expected "
                             "verify-ca or verify-full (disable never uses it)")
        return self

    @model_validator(mode="after")
    def _connect_auth_is_whole(self) -> "Settings":
        has_password = self.connect_password is not None or self.connect_password_file is not None
        if self.connect_password is not None and self.connect_password_file is not None:
            raise ValueError("RELAY_CONNECT_PASSWORD and RELAY_CONNECT_PASSWORD_FILE are both set; expected one")
        if has_password != (self.connect_username is not None):
            raise ValueError("RELAY_CONNECT_USERNAME and a password (RELAY_CONNECT_PASSWORD or _FILE): one is set; "
                             "expected both (basic auth on Connect's REST API) or neither")
        if self.connect_password_file is not None and not self.connect_password_file.is_file():
            raise ValueError(f"RELAY_CONNECT_PASSWORD_FILE = {str(self.connect_password_file)!r}: no such file; "
                             "expected a readable file")
        return self

    @property
    def connect_auth(self) -> tuple[str, str] | None:
        """(user, password) for Connect's REST API, or None (the password is read when asked)."""
        if self.connect_username is None:
            return None
        if self.connect_password is not None:
            return self.connect_username, self.connect_password.get_secret_value()
        assert self.connect_password_file is not None  # _connect_auth_is_whole
        return self.connect_username, self.connect_password_file.read_text(encoding="utf-8").strip()

    @model_validator(mode="after")
    def _queue_holds_a_batch(self) -> "Settings":
        if self.max_queue_size <= self.max_batch_size:
            raise ValueError(f"max_queue_size ({self.max_queue_size}) must be greater than "
                             f"max_batch_size ({self.max_batch_size}) (a Debezium requirement)")
        return self

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the values ``load_settings`` passes: it reads the environment itself (strings,
        lists as ``a,b`` or JSON), so pydantic-settings' own env source must not run (it would
        JSON-decode list settings and reject ``order`` or ``a,b``)."""
        return (init_settings,)

    @field_validator("aggregate_types", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return split_list(value)

    @field_validator("aggregate_types", mode="after")
    @classmethod
    def _topic_safe(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not AGGREGATE_TYPE_RE.match(v)]
        if bad:
            raise ValueError(f"aggregate types must be 1-200 characters of [A-Za-z0-9._-], got {bad}")
        for one, other in colliding(value):
            raise ValueError(f"aggregate types {one!r} and {other!r} collide: Kafka treats '.' and '_' alike "
                             "in topic names and refuses the second topic; keep one of them")
        return value

    @field_validator("stack_dir", "cache_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    # --- derived addresses -----------------------------------------------------------------
    @property
    def dsn(self) -> str:
        """The application role's DSN, password included: for connecting, never for printing."""
        if self.pg_dsn is not None:
            return self.pg_dsn.get_secret_value()
        return (f"postgresql://{self.pg_user}:{self.pg_password.get_secret_value()}@{self.host}:{self.pg_port}/"
                f"{self.pg_database}{self._pg_tls_query}")

    @property
    def _pg_tls_query(self) -> str:
        params = {"sslmode": self.pg_sslmode, "sslrootcert": self.pg_ssl_root_cert}
        query = "&".join(f"{k}={quote(str(v), safe='/')}" for k, v in params.items() if v is not None)
        return f"?{query}" if query else ""

    @property
    def cdc_dsn(self) -> str:
        """The replication role's DSN (slots, peeks): for connecting, never for printing."""
        host = self.connector_pg_host or self.host
        return (f"postgresql://{self.pg_cdc_user}:{self.pg_cdc_password.get_secret_value()}@{host}:{self.pg_port}/"
                f"{self.pg_database}{self._pg_tls_query}")

    @property
    def dsn_display(self) -> str:
        """:attr:`dsn` with ``****`` for the password: what outputs and logs show."""
        return mask_dsn(self.dsn)

    @property
    def max_record_bytes(self) -> int:
        """What topics (``max.message.bytes``) and producers (``max.request.size``) must accept so
        that an event of ``max_event_bytes`` always fits, with its headers and record framing."""
        return self.max_event_bytes + RECORD_OVERHEAD_BYTES

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap or f"{self.host}:{self.kafka_port}"

    @property
    def connect_rest_url(self) -> str:
        return (self.connect_url or f"http://{self.host}:{self.connect_port}").rstrip("/")

    @property
    def faust_data_dir(self) -> Path:
        return self.worker_data_dir or self.stack_dir / "faust"


def split_list(value: object) -> object:
    """A list setting from the environment: JSON (``["a","b"]``) or comma-separated (``a, b``)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            pass  # not JSON after all: let the comma split and the item validation explain
    return [part.strip() for part in text.split(",") if part.strip()]


def _misspelled(env: Mapping[str, str]) -> list[str]:
    known = {name.upper() for name in Settings.model_fields}
    problems = []
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX):
            continue
        name = var[len(ENV_PREFIX):]
        if name in known:
            continue
        hint = difflib.get_close_matches(name, known, n=1)
        suggestion = f"; did you mean {ENV_PREFIX}{hint[0]}?" if hint else ""
        problems.append(f"{var}: unknown setting{suggestion}")
    return problems


def _is_secret(field: str) -> bool:
    info = Settings.model_fields.get(field.split(".")[0])
    return info is not None and "SecretStr" in str(info.annotation)


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from ``env`` (default ``os.environ``) plus keyword overrides.

    Raises ConfigError naming every invalid or unknown setting, with the value and what was
    expected.
    """
    env = dict(os.environ if env is None else env)
    problems = _misspelled(env)
    values: dict[str, Any] = {
        name: env[ENV_PREFIX + name.upper()]
        for name in Settings.model_fields
        if ENV_PREFIX + name.upper() in env
    }
    values.update(overrides)
    settings = None
    try:
        # values given explicitly; the env source is bypassed so `env` is the only input
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            if field:
                shown = "****" if _is_secret(field) else repr(err.get("input"))
                problems.append(f"{ENV_PREFIX + field.upper()}={shown}: {err['msg']}")
            else:  # a rule across several settings
                problems.append(err["msg"].removeprefix("Value error, "))
    if problems:
        raise ConfigError(problems)
    assert settings is not None
    return settings
