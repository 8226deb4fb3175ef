"""The native stack's SASL_SSL profile (``RELAY_STACK_SECURITY=sasl_ssl``): a broker like a user's.

- TLS: a CA of the stack's own (``security/ca.pem``) signs the broker's certificate for
  ``localhost`` and ``127.0.0.1``; clients verify it (``RELAY_KAFKA_SSL_CA_FILE``).
- SASL: SCRAM-SHA-512 on the client listener. ``admin`` (a super user) is written into the
  metadata when the storage is formatted (Kafka's way to bootstrap the first SCRAM user); every
  other user is created with Kafka's admin API (``AlterUserScramCredentials``) by that admin.
  The controller listener takes PLAIN with a static ``controller`` user (KRaft controllers
  cannot read SCRAM credentials from the metadata they serve).
- ACLs: ``StandardAuthorizer`` with ``allow.everyone.if.no.acl.found=false``; ``connect`` and
  the demo's worker ``relay-orders`` get exactly relay.security.acls' grants.
- Postgres: TLS only over TCP (``hostssl``; the same certificate), clients with ``verify-full``.
- Connect's REST API: HTTP basic auth (BasicAuthSecurityRestExtension), user ``operator``.

Each user's password is a random file (0600) under ``security/``; ``security/<user>.env`` holds
the ``RELAY_KAFKA_*`` settings for a process that should act as that user (``set -a; .
security/admin.env``), the password only by file reference.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from relay.errors import StackError
from relay.security.acls import Acl, connect_acls, worker_acls

if TYPE_CHECKING:
    from relay.config import Settings

SASL_SSL = "sasl_ssl"
REST_USER = "operator"  # HTTP basic auth on Connect's REST API
MECHANISM = "SCRAM-SHA-512"
ADMIN, CONNECT, CONTROLLER = "admin", "connect", "controller"
PROFILE_FILE = "security-profile"  # in the stack dir: the profile its data was made with


DEMO_WORKER, DEMO_WORKER_USER = "orders", "relay-orders"  # `relay worker orders`, as its own user


def write_private(path: Path, text: str) -> None:
    """``text`` into ``path``, readable by its owner only, whole or not at all (a temporary file
    made 0600 first, then renamed over ``path``)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


class SecureProfile:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.stack_dir / "security"

    @property
    def enabled(self) -> bool:
        return self.settings.stack_security == SASL_SSL

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def keystore(self) -> Path:
        return self.dir / "broker-keystore.pem"

    # --- files ---------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Make the CA, the broker's certificate and the admin/controller passwords (once)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        if not self.keystore.exists():
            self._make_tls()
        for user in (ADMIN, CONTROLLER, CONNECT, REST_USER):
            self.password(user)
        self.env_file(ADMIN)

    def _make_tls(self) -> None:
        d = self.dir
        ext = d / "broker.ext"
        ext.write_text(f"subjectAltName={','.join(self.server_names())}\nbasicConstraints=CA:FALSE\n"
                       "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n")
        steps = [
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj",
             "/CN=outbox-relay dev stack CA", "-keyout", str(d / "ca.key"), "-out", str(self.ca_file)],
            ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
             "-keyout", str(d / "broker.key"), "-out", str(d / "broker.csr")],
            ["openssl", "x509", "-req", "-in", str(d / "broker.csr"), "-CA", str(self.ca_file), "-CAkey",
             str(d / "ca.key"), "-CAcreateserial", "-days", "825", "-extfile", str(ext), "-out", str(d / "broker.pem")],
        ]
        for argv in steps:
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise StackError("kafka", f"making the TLS files failed: {' '.join(argv[:3])}", done.stderr[-2000:])
        # Kafka's PEM keystore: the private key (PKCS#8, unencrypted) followed by its certificate
        self.keystore.write_text((d / "broker.key").read_text() + (d / "broker.pem").read_text())
        for f in (d / "ca.key", d / "broker.key", self.keystore):
            f.chmod(0o600)

    def server_names(self) -> list[str]:
        """The certificate's names: localhost, 127.0.0.1 and the stack's host (RELAY_HOST)."""
        import ipaddress

        names = ["DNS:localhost", "IP:127.0.0.1"]
        try:
            names.append(f"IP:{ipaddress.ip_address(self.settings.host)}")
        except ValueError:
            names.append(f"DNS:{self.settings.host}")
        return list(dict.fromkeys(names))

    def password(self, user: str) -> str:
        """The user's password, made on first use and kept in ``security/<user>.password``."""
        path = self.password_file(user)
        if not path.exists() or not path.read_text().strip():  # an empty one: a write cut short
            write_private(path, secrets.token_urlsafe(24) + "\n")
        return path.read_text().strip()

    def password_file(self, user: str) -> Path:
        return self.dir / f"{user}.password"

    def env(self, user: str) -> dict[str, str]:
        """The settings of a process acting as ``user`` (the password by file reference only)."""
        self.password(user)
        return {"RELAY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "RELAY_KAFKA_SASL_MECHANISM": MECHANISM,
                "RELAY_KAFKA_SASL_USERNAME": user, "RELAY_KAFKA_SASL_PASSWORD_FILE": str(self.password_file(user)),
                "RELAY_KAFKA_SSL_CA_FILE": str(self.ca_file),
                # Postgres takes TLS only: every client (and Debezium) checks its certificate and name
                "RELAY_PG_SSLMODE": "verify-full", "RELAY_PG_SSL_ROOT_CERT": str(self.ca_file),
                # the operator's commands (admin) also talk to Connect's REST API, which asks who
                **({"RELAY_CONNECT_USERNAME": REST_USER,
                    "RELAY_CONNECT_PASSWORD_FILE": str(self.password_file(REST_USER))} if user == ADMIN else {})}

    def env_file(self, user: str) -> Path:
        """``security/<user>.env`` (``KEY=value`` lines), written each time."""
        path = self.dir / f"{user}.env"
        path.write_text("".join(f"{k}={v}\n" for k, v in self.env(user).items()))
        return path

    def settings_for(self, user: str) -> Settings:
        """These settings, connecting as ``user``."""
        from relay.config import Settings

        return Settings.model_validate({**self.settings.model_dump(exclude_unset=True),
                                        **{k.removeprefix("RELAY_").lower(): v for k, v in self.env(user).items()},
                                        "kafka_sasl_password": None})

    def check_profile(self, has_data: bool) -> None:
        """Refuse a stack whose data was made under the other profile (before any part starts:
        Postgres and Kafka would each be half switched); then record the profile."""
        marker = self.settings.stack_dir / PROFILE_FILE
        wanted = self.settings.stack_security
        made = marker.read_text().strip() if marker.exists() else ("plaintext" if has_data else wanted)
        if made != wanted:
            raise StackError("stack", f"RELAY_STACK_SECURITY = {wanted!r} but this stack's data was made with "
                             f"{made!r}; expected the same profile (`relay stack down && relay stack clean`, or "
                             "another RELAY_STACK_DIR)")
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(wanted + "\n")

    # --- Connect's REST API -----------------------------------------------------------------
    def rest_auth_files(self, connect_dir: Path) -> Path:
        """The JAAS file of Connect's BasicAuthSecurityRestExtension and its credentials file
        (``user=password``, 0600); returns the JAAS file for ``-Djava.security.auth.login.config``."""
        credentials = connect_dir / "rest-credentials.properties"
        write_private(credentials, f"{REST_USER}={self.password(REST_USER)}\n")
        jaas = connect_dir / "rest-jaas.conf"
        jaas.write_text("KafkaConnect {\n  org.apache.kafka.connect.rest.basic.auth.extension.PropertyFileLoginModule "
                        f'required\n  file="{credentials}";\n}};\n')
        return jaas

    # --- the broker -------------------------------------------------------------------------
    def broker_properties(self) -> dict[str, object]:
        s = self.settings
        admin, controller = self.password(ADMIN), self.password(CONTROLLER)
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
        plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
        return {
            "listeners": f"CLIENT://{s.host}:{s.kafka_port},CONTROLLER://{s.host}:{s.kafka_controller_port}",
            "advertised.listeners": f"CLIENT://{s.host}:{s.kafka_port}",
            "listener.security.protocol.map": "CLIENT:SASL_SSL,CONTROLLER:SASL_PLAINTEXT",
            "inter.broker.listener.name": "CLIENT",
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.client.sasl.enabled.mechanisms": MECHANISM,
            "listener.name.client.scram-sha-512.sasl.jaas.config":
                f'{scram} required username="{ADMIN}" password="{admin}";',
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config":
                f'{plain} required username="{CONTROLLER}" password="{controller}" '
                f'user_{CONTROLLER}="{controller}";',
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca_file),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:{ADMIN};User:{CONTROLLER}",
        }

    def format_args(self) -> list[str]:
        """StorageTool format's arguments that write the admin's SCRAM credential."""
        return ["--add-scram", f"{MECHANISM}=[name={ADMIN},password={self.password(ADMIN)}]"]

    def grants(self) -> dict[str, list[Acl]]:
        """Every user the profile makes (besides the admin) and its ACLs."""
        return {CONNECT: connect_acls(CONNECT, self.settings),
                DEMO_WORKER_USER: worker_acls(DEMO_WORKER_USER, DEMO_WORKER, self.settings)}
