"""JVM parts from Maven Central: the pinned pom in connectors/, cached in a git-ignored folder.

``ensure_jars`` runs ``mvn dependency:copy-dependencies`` for the ``kafka`` and ``debezium``
profiles only when the pom changed since the last successful fetch (a stamp file holds its
hash), so it is cheap and idempotent. The Maven repository itself is ``<cache_dir>/m2``.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from relay.config import Settings, project_root
from relay.errors import StackError

PROFILES = ("kafka", "debezium", "postgres-tls")


def pom_path() -> Path:
    return project_root() / "connectors" / "pom.xml"


def jars_dir(settings: Settings) -> Path:
    return settings.cache_dir / "jars"


def kafka_classpath(settings: Settings) -> Path:
    return jars_dir(settings) / "kafka"


def plugin_path(settings: Settings) -> Path:
    return jars_dir(settings) / "plugins"


def postgres_tls_jar(settings: Settings) -> Path:
    """The jar holding Postgres server binaries built with OpenSSL (a .txz inside)."""
    found = sorted((jars_dir(settings) / "postgres-tls").glob("embedded-postgres-binaries-*.jar"))
    if not found:
        raise StackError("jars", f"no Postgres binaries jar in {jars_dir(settings) / 'postgres-tls'}; "
                         "expected one fetched by `relay stack fetch`")
    return found[-1]


def ensure_jars(settings: Settings) -> bool:
    """Fetch the jars if missing or stale; True if a fetch ran."""
    pom = pom_path()
    if not pom.is_file():
        raise StackError("jars", f"pinned pom not found at {pom}; run from a checkout of outbox-relay")
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    stamp = jars_dir(settings) / ".pom.sha256"
    if stamp.is_file() and stamp.read_text().strip() == digest:
        return False
    if shutil.which("mvn") is None:
        raise StackError("jars", "Maven (mvn) is not on PATH; it is needed once to fetch the Kafka and Debezium jars")
    shutil.rmtree(jars_dir(settings), ignore_errors=True)
    for profile in PROFILES:
        result = subprocess.run(
            ["mvn", "-B", "-q", "-f", str(pom), f"-Dmaven.repo.local={settings.cache_dir / 'm2'}",
             f"-Djars.dir={jars_dir(settings)}", "-P", profile, "dependency:copy-dependencies"],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise StackError("jars", f"mvn -P {profile} failed (exit {result.returncode})",
                             (result.stdout + result.stderr)[-3000:])
    stamp.write_text(digest)
    return True
