"""Kafka Connect, distributed mode, one worker, with Debezium's Postgres plugin on plugin.path.

- Internal topics (configs/offsets/status) are created by the worker itself with replication 1.
- ``topic.creation.enable=true``: connectors declare the settings of the topics they create, so
  a new aggregate type gets a topic even though broker auto-creation is off.
- ``plugin.discovery=service_load``: REST up in ~5 s instead of ~8 s and ~270 MB instead of
  ~800 MB RSS (Debezium 3.5 ships the ServiceLoader manifests).
- Secrets: the worker enables the ``file`` config provider; connector configs reference
  ``${file:<stack>/connect/secrets.properties:<key>}`` so the database password never appears in
  a rendered config, the REST API or logs.
"""

from __future__ import annotations

from relay.connect.client import ConnectClient
from relay.connect.render import override_allowlist, render_outbox_connector
from relay.errors import ConnectError
from relay.security.acls import CONNECT_GROUP
from relay.stack.jars import kafka_classpath, plugin_path
from relay.stack.part import LOG4J2, Part, java_argv
from relay.stack.secure import CONNECT, REST_USER, write_private

POSTGRES_CONNECTOR_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
BASIC_AUTH_EXTENSION = "org.apache.kafka.connect.rest.basic.auth.extension.BasicAuthSecurityRestExtension"
SECRETS_FILE = "secrets.properties"


class ConnectPart(Part):
    name = "connect"

    @property
    def address(self) -> str:
        return self.settings.connect_rest_url

    @property
    def secrets_file(self):
        return self.dir / SECRETS_FILE

    def _properties(self) -> str:
        s = self.settings
        props = {
            "bootstrap.servers": s.bootstrap_servers,
            "group.id": CONNECT_GROUP,
            "config.storage.topic": f"{CONNECT_GROUP}-configs",
            "offset.storage.topic": f"{CONNECT_GROUP}-offsets",
            "status.storage.topic": f"{CONNECT_GROUP}-status",
            "config.storage.replication.factor": 1,
            "offset.storage.replication.factor": 1,
            "status.storage.replication.factor": 1,
            "offset.storage.partitions": 5,
            "status.storage.partitions": 1,
            # exactly-once source: records and source offsets commit in one Kafka transaction, so a
            # Connect crash replays nothing already visible to read_committed consumers
            "exactly.once.source.support": "enabled",
            # (without EOS this also bounds the replay after a crash: everything since the last flush)
            "offset.flush.interval.ms": 5000,
            # one worker: when it dies and comes back it is a new group member, and Connect's
            # default (300 s) would hold the dead member's tasks unassigned that long
            "scheduled.rebalance.max.delay.ms": 0,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 2000,
            "key.converter": "org.apache.kafka.connect.storage.StringConverter",
            "value.converter": "org.apache.kafka.connect.storage.StringConverter",
            "listeners": f"http://{s.host}:{s.connect_port}",
            "rest.advertised.host.name": s.host,
            "rest.advertised.port": s.connect_port,
            "plugin.path": str(plugin_path(s)),
            "plugin.discovery": "service_load",
            "topic.creation.enable": "true",
            # connectors may override only the client settings the outbox connector sets
            "connector.client.config.override.policy": "Allowlist",
            "connector.client.config.override.allowlist": ",".join(override_allowlist(render_outbox_connector(s))),
            "config.providers": "file",
            "config.providers.file.class": "org.apache.kafka.common.config.provider.FileConfigProvider",
        }
        if self.secure.enabled:
            # the worker, its tasks' producers and consumers and its admin client, all as `connect`
            from relay.kafka_security import java

            as_connect = self.secure.settings_for(CONNECT)
            for prefix in ("", "producer.", "consumer.", "admin."):
                props.update(java(as_connect, secrets_file=str(self.secrets_file), prefix=prefix))
            # the REST API asks for a user (rest-jaas.conf, given to the JVM at start)
            props["rest.extension.classes"] = BASIC_AUTH_EXTENSION
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _write_secrets(self) -> None:
        lines = f"pg.password={self.settings.pg_cdc_password.get_secret_value()}\n"
        if self.secure.enabled:
            lines += f"kafka.sasl.password={self.secure.password(CONNECT)}\n"
        write_private(self.secrets_file, lines)

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "worker.properties").write_text(self._properties())
        (self.dir / "log4j2.properties").write_text(LOG4J2)
        self._write_secrets()
        jvm: tuple[str, ...] = ()
        if self.secure.enabled:
            jvm = (f"-Djava.security.auth.login.config={self.secure.rest_auth_files(self.dir)}",)
        argv = java_argv(self.settings.connect_heap, self.dir / "log4j2.properties", kafka_classpath(self.settings),
                         "org.apache.kafka.connect.cli.ConnectDistributed", str(self.dir / "worker.properties"),
                         jvm=jvm)
        self.process.start(argv)

    def ready(self) -> bool:
        if self.process.pid() is None:
            return False
        auth = None
        if self.secure.enabled:
            auth = (REST_USER, self.secure.password(REST_USER))
        try:
            plugins = ConnectClient(self.address, timeout_s=2, transient_s=0, auth=auth).plugins()
        except ConnectError:
            return False
        return any(p.get("class") == POSTGRES_CONNECTOR_CLASS for p in plugins)

    def after_ready(self) -> None:
        # the password may have changed since start; the file provider reads it at task start
        self._write_secrets()

    @property
    def ports(self) -> list[int]:
        return [self.settings.connect_port]
