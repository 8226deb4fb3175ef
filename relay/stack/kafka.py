"""Kafka 4.x in KRaft combined mode (one node, broker + controller) from Maven Central jars.

Single-node settings that matter: broker auto-creation off (topics are declared, see
``relay topics apply`` and Connect's topic creation), replication factor 1 and min ISR 1 for the
internal topics, 10 offsets partitions (50 are slow to create), no initial rebalance delay.
Storage is formatted once, on first start (``meta.properties`` marks it).
"""

from __future__ import annotations

import functools
import subprocess

from confluent_kafka.admin import AdminClient

from relay.errors import StackError
from relay.stack.jars import kafka_classpath
from relay.stack.part import LOG4J2, Part, java_argv
from relay.stack.secure import ADMIN, write_private


class KafkaPart(Part):
    name = "kafka"

    @property
    def address(self) -> str:
        return self.settings.bootstrap_servers

    @property
    def data_dir(self):
        return self.dir / "data"

    def _properties(self) -> str:
        s = self.settings
        props = {
            "process.roles": "broker,controller",
            "node.id": 1,
            "listeners": f"PLAINTEXT://{s.host}:{s.kafka_port},CONTROLLER://{s.host}:{s.kafka_controller_port}",
            "advertised.listeners": f"PLAINTEXT://{s.host}:{s.kafka_port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.quorum.bootstrap.servers": f"{s.host}:{s.kafka_controller_port}",
            "log.dirs": str(self.data_dir),
            "auto.create.topics.enable": "false",
            "num.partitions": s.topic_partitions,
            "default.replication.factor": 1,
            "offsets.topic.replication.factor": 1,
            "offsets.topic.num.partitions": 10,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            "group.initial.rebalance.delay.ms": 0,
            "log.segment.bytes": 64 * 1024 * 1024,
            "log.retention.hours": 168,
            # dev stack: apply retention (e.g. the inbox changelogs' dedup window) within a minute
            "log.retention.check.interval.ms": 60_000,
        }
        if self.secure.enabled:
            props.update(self.secure.broker_properties())
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _prepare(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        formatted = (self.data_dir / "meta.properties").exists()
        if self.secure.enabled:
            self.secure.prepare()
        # 0600: the secure profile's holds the broker's own passwords
        write_private(self.dir / "server.properties", self._properties())
        (self.dir / "log4j2.properties").write_text(LOG4J2)
        if formatted:
            return
        cp = f"{kafka_classpath(self.settings)}/*"
        cluster = subprocess.run(
            ["java", "-cp", cp, "kafka.tools.StorageTool", "random-uuid"],
            capture_output=True, text=True, check=False,
        )
        if cluster.returncode != 0:
            raise StackError(self.name, "StorageTool random-uuid failed", cluster.stderr[-3000:])
        args = [f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}", "-cp", cp,
                "kafka.tools.StorageTool", "format", "--standalone", "-t", cluster.stdout.strip(),
                "-c", str(self.dir / "server.properties"),
                *(self.secure.format_args() if self.secure.enabled else [])]
        # in a 0600 argument file, not on the command line: the admin's password is among them
        argfile = self.dir / "format.args"
        write_private(argfile, "\n".join('"' + a.replace("\\", "\\\\").replace('"', '\\"') + '"' for a in args))
        try:
            fmt = subprocess.run(["java", f"@{argfile}"], capture_output=True, text=True, check=False)
        finally:
            argfile.unlink(missing_ok=True)
        if fmt.returncode != 0:
            said = fmt.stdout + fmt.stderr
            if self.secure.enabled:
                said = said.replace(self.secure.password(ADMIN), "****")
            raise StackError(self.name, "formatting KRaft storage failed", said[-3000:])

    @functools.cached_property
    def _admin_security(self) -> dict:
        """The probe's and setup's login as the admin (made once: readiness is polled)."""
        if not self.secure.enabled:
            return {}
        from relay.kafka_security import librdkafka

        return librdkafka(self.secure.settings_for(ADMIN))

    def after_ready(self) -> None:
        """Under the secure profile: the users of relay.stack.secure and their ACLs (idempotent)."""
        if not self.secure.enabled:
            return
        from relay.security.kafka_admin import create_acls, upsert_users

        grants = self.secure.grants()
        admin = self.secure.settings_for(ADMIN)
        upsert_users(admin, {user: self.secure.password(user) for user in grants})
        create_acls(admin, [acl for acls in grants.values() for acl in acls])
        for user in (ADMIN, *grants):
            self.secure.env_file(user)

    @property
    def ports(self) -> list[int]:
        return [self.settings.kafka_port, self.settings.kafka_controller_port]

    def start(self) -> None:
        self._prepare()
        argv = java_argv(self.settings.kafka_heap, self.dir / "log4j2.properties",
                         kafka_classpath(self.settings), "kafka.Kafka", str(self.dir / "server.properties"))
        self.process.start(argv)

    def ready(self) -> bool:
        if self.process.pid() is None:
            return False
        admin = AdminClient({"bootstrap.servers": self.address, "socket.timeout.ms": 2000,
                             "log_level": 0,  # connection refused while booting is expected
                             **self._admin_security})
        try:
            metadata = admin.list_topics(timeout=2)
        except Exception:  # noqa: BLE001 - KafkaException while the broker boots
            return False
        return bool(metadata.brokers)
