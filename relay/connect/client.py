"""A small Kafka Connect REST client (stdlib only); HTTP failures become ConnectError.

Secrets: connector configs reference the database password through Connect's ``file`` config
provider, and Connect resolves such references *before* it validates a config (a validation
error message may then quote a resolved value, e.g. ``password authentication failed for user
"<resolved value>"``). The client is given the secret values it must never hand back
(``secrets=``) and replaces them in every response and every error message it produces.
"""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from relay.errors import ConnectError

if TYPE_CHECKING:
    from relay.config import Settings

REDACTED = "[redacted]"
# ${provider:path:key} as Connect's ConfigTransformer reads it (path may be empty: ${provider:key})
_REFERENCE = re.compile(r"\$\{([^}:]+):(?:([^}]*):)?([^}:]+)\}")
# states in which a connector or task is on its way somewhere else
_TRANSIENT = {"UNASSIGNED", "RESTARTING"}


@dataclass(frozen=True)
class ApplyResult:
    name: str
    changed: bool  # False: the running config already equalled the rendered one
    created: bool


@dataclass(frozen=True)
class ConfigProblem:
    """One config key that Connect's validation rejected, with every error it gave for it."""

    key: str
    errors: tuple[str, ...]
    value: str | None  # the value *we* sent (a reference stays a reference), None if we sent none

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value, "errors": list(self.errors)}


@dataclass(frozen=True)
class DeleteResult:
    name: str
    existed: bool
    slot_name: str | None = None  # slot.name of the deleted connector (it stays in Postgres)
    database: str | None = None


# --- pure helpers (unit-tested) ------------------------------------------------------------


def redact(data: Any, secrets: Iterable[str]) -> Any:
    """``data`` with every occurrence of a secret replaced by ``[redacted]`` (strings, lists, dicts)."""
    values = sorted({s for s in secrets if s}, key=len, reverse=True)
    if not values:
        return data

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            for secret in values:
                item = item.replace(secret, REDACTED)
            return item
        if isinstance(item, Mapping):
            return {walk(k): walk(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [walk(v) for v in item]
        return item

    return walk(data)


def provider_references(config: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """Every ``${provider:path:key}`` in the config values, as (provider, path, key)."""
    refs = []
    for value in config.values():
        for match in _REFERENCE.finditer(str(value)):
            refs.append((match[1], match[2] or "", match[3]))
    return refs


def parse_properties(text: str) -> dict[str, str]:
    """A Java properties file, simply: ``key=value`` / ``key: value`` lines, ``#``/``!`` comments."""
    props: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        match = re.match(r"([^=:\s]+)\s*[=:\s]\s*(.*)$", line)
        if match:
            props[match[1]] = match[2]
        else:
            props[line] = ""
    return props


def local_file_secrets(config: Mapping[str, str]) -> list[str]:
    """Values that the config's ``${file:...}`` references resolve to, where the file is readable here.

    Connect resolves them on its side; when the worker runs on this machine we can know the values
    and keep them out of everything we print.
    """
    values = []
    for provider, path, key in provider_references(config):
        if provider != "file" or not path:
            continue
        try:
            props = parse_properties(Path(path).read_text(encoding="utf-8"))
        except OSError:
            continue
        if props.get(key):
            values.append(props[key])
    return values


def parse_validation(response: Mapping[str, Any], sent: Mapping[str, str]) -> list[ConfigProblem]:
    """Every key with errors in a ``/connector-plugins/{class}/config/validate`` answer.

    Connect echoes each key's value, resolved through config providers; the problems carry the
    value we sent instead, so a ``${file:...}`` reference is shown, never what it resolves to.
    """
    problems: dict[str, list[str]] = {}
    for entry in response.get("configs") or []:
        value = entry.get("value") or {}
        key = value.get("name") or (entry.get("definition") or {}).get("name") or "?"
        errors = [str(e) for e in value.get("errors") or [] if e]
        if errors:
            problems.setdefault(key, [])
            problems[key].extend(e for e in errors if e not in problems[key])
    result = [ConfigProblem(key, tuple(errs), sent.get(key)) for key, errs in problems.items()]
    counted = sum(len(p.errors) for p in result)
    error_count = int(response.get("error_count") or 0)
    if error_count > counted and not result:
        result.append(ConfigProblem("(connector)", (
            f"Connect counted {error_count} error(s) but attached them to no config key",), None))
    order = list(sent)
    result.sort(key=lambda p: (order.index(p.key) if p.key in order else len(order), p.key))
    return result


def normalize_status(raw: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    """Connect's status, with every field always present (state, worker_id, trace) and ``ok``.

    ``ok`` is True when the connector and every task are RUNNING. An unregistered connector has
    state ABSENT.
    """
    if raw is None:
        return {"name": name, "type": None, "ok": False,
                "connector": {"state": "ABSENT", "worker_id": None, "trace": None}, "tasks": []}
    conn = raw.get("connector") or {}
    tasks = [
        {"id": t.get("id"), "state": t.get("state"), "worker_id": t.get("worker_id"), "trace": t.get("trace")}
        for t in raw.get("tasks") or []
    ]
    tasks.sort(key=lambda t: (t["id"] is None, t["id"]))
    connector = {"state": conn.get("state"), "worker_id": conn.get("worker_id"), "trace": conn.get("trace")}
    ok = connector["state"] == "RUNNING" and all(t["state"] == "RUNNING" for t in tasks)
    return {"name": raw.get("name", name), "type": raw.get("type"), "ok": ok, "connector": connector,
            "tasks": tasks}


def restarting(raw: Mapping[str, Any] | None) -> list[str]:
    """Which instances a restart answer marks RESTARTING: ``connector`` and/or ``task <id>``."""
    if not raw:
        return []
    out = ["connector"] if (raw.get("connector") or {}).get("state") == "RESTARTING" else []
    out += [f"task {t.get('id')}" for t in raw.get("tasks") or [] if t.get("state") == "RESTARTING"]
    return out


def first_failure(status: Mapping[str, Any]) -> tuple[str, str] | None:
    """(which, trace) of the connector or first task that is FAILED, else None."""
    if status["connector"]["state"] == "FAILED":
        return "connector", status["connector"].get("trace") or ""
    for task in status["tasks"]:
        if task["state"] == "FAILED":
            return f"task {task['id']}", task.get("trace") or ""
    return None


def transient(exc: ConnectError) -> bool:
    """Whether Connect refused a call for a passing reason it asks clients to retry."""
    if exc.status == 409:  # "Cannot complete request ... rebalance in progress"
        return True
    return exc.status == 500 and "safely retried" in str(exc)


# --- the client -----------------------------------------------------------------------------


class ConnectClient:
    def __init__(self, url: str, timeout_s: float = 10.0, secrets: Iterable[str] = (),
                 transient_s: float = 30.0, auth: tuple[str, str] | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.transient_s = transient_s
        self.secrets = [s for s in secrets if s]
        self._authorization = None if auth is None else "Basic " + base64.b64encode(
            f"{auth[0]}:{auth[1]}".encode()).decode()

    @classmethod
    def for_settings(cls, settings: Settings, **kwargs: Any) -> ConnectClient:
        """A client of ``settings``' Connect, with its REST credentials if any."""
        return cls(settings.connect_rest_url, auth=settings.connect_auth, **kwargs)

    def _redact(self, data: Any) -> Any:
        return redact(data, self.secrets)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        """One REST call; a transient refusal Connect itself says to retry is retried.

        Connect answers 409 while its group rebalances and 500 "... can be safely retried" when
        a write to its config topic failed (e.g. the broker just restarted). Every call this
        client makes is idempotent (PUT config/pause/resume/stop, PATCH/DELETE offsets, restart),
        so it is sent again with backoff for up to ``transient_s`` before the error is raised.
        """
        deadline = time.monotonic() + self.transient_s
        delay = 0.25
        while True:
            try:
                return self._call_once(method, path, body)
            except ConnectError as exc:
                if not transient(exc) or time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _call_once(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.url}{path}", data=data, method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json",
                     **({"Authorization": self._authorization} if self._authorization else {})},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            try:
                detail = json.loads(detail).get("message", detail)
            except (ValueError, AttributeError):
                pass
            if exc.code == 401:
                detail = ("refused our credentials; expected RELAY_CONNECT_USERNAME and RELAY_CONNECT_PASSWORD (or "
                          "_FILE) of its REST API" if self._authorization else
                          "asks for credentials; expected RELAY_CONNECT_USERNAME and RELAY_CONNECT_PASSWORD (or _FILE)")
                raise ConnectError(f"{method} {path}: Kafka Connect at {self.url} {detail} (HTTP 401)",
                                   status=401) from None
            raise ConnectError(self._redact(f"{method} {path}: HTTP {exc.code}: {detail}"),
                               status=exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ConnectError(f"{method} {path}: Kafka Connect at {self.url} unreachable: {exc}") from None
        return self._redact(json.loads(raw)) if raw else None

    @staticmethod
    def _path(name: str) -> str:
        return f"/connectors/{urllib.parse.quote(name, safe='')}"

    def plugins(self) -> list[dict[str, Any]]:
        plugins: list[dict[str, Any]] = self._call("GET", "/connector-plugins?connectorsOnly=false")
        return plugins

    def connectors(self) -> list[str]:
        names: list[str] = self._call("GET", "/connectors")
        return names

    def _get_or_none(self, path: str) -> Any:
        """GET ``path``; None when Connect answers 404 (no such connector)."""
        try:
            return self._call("GET", path)
        except ConnectError as exc:
            if exc.status == 404:
                return None
            raise

    def config(self, name: str) -> dict[str, str] | None:
        config: dict[str, str] | None = self._get_or_none(f"{self._path(name)}/config")
        return config

    def status(self, name: str) -> dict[str, Any] | None:
        """Connect's raw status answer, None when the connector is not registered."""
        status: dict[str, Any] | None = self._get_or_none(f"{self._path(name)}/status")
        return status

    def state(self, name: str) -> dict[str, Any]:
        """The status normalized (see :func:`normalize_status`); ABSENT when not registered."""
        return normalize_status(self.status(name), name)

    def require(self, name: str) -> dict[str, Any]:
        """The normalized status; ConnectError (404) when the connector is not registered."""
        st = self.state(name)
        if st["connector"]["state"] == "ABSENT":
            raise ConnectError(f"connector {name} is not registered (run `relay connectors apply`)", status=404)
        return st

    # --- config ---------------------------------------------------------------------------
    def validate(self, config: Mapping[str, str], name: str | None = None) -> list[ConfigProblem]:
        """Every problem Connect's own validation finds in ``config`` (an empty list: valid).

        Connect resolves config-provider references first and then runs the plugin's validation
        (Debezium opens a test connection to Postgres with the resolved credentials).
        """
        cls = (config.get("connector.class") or "").strip()
        if not cls:
            return [ConfigProblem("connector.class", ("is empty or missing: Connect cannot choose a plugin",),
                                  config.get("connector.class"))]
        body = dict(config)
        if name is not None:
            body.setdefault("name", name)
        path = f"/connector-plugins/{urllib.parse.quote(cls, safe='')}/config/validate"
        try:
            response = self._call("PUT", path, body)
        except ConnectError as exc:
            if exc.status == 500 and "ConfigException" in str(exc):
                raise ConnectError(f"{exc}\n(Connect resolves config-provider references such as "
                                   "${file:...} before validating: is the referenced file or key there, "
                                   "as the Connect worker sees it?)", status=exc.status,
                                   retriable=False) from None
            raise
        return parse_validation(response, body)

    def apply(self, name: str, config: dict[str, str]) -> ApplyResult:
        """PUT the config unless the running one is identical (then nothing is sent)."""
        current = self.config(name)
        if current is not None:
            comparable = {k: v for k, v in current.items() if k != "name"}
            if comparable == config:
                return ApplyResult(name, changed=False, created=False)
        self._call("PUT", f"{self._path(name)}/config", config)
        return ApplyResult(name, changed=True, created=current is None)

    # --- lifecycle ------------------------------------------------------------------------
    def pause(self, name: str) -> None:
        self._call("PUT", f"{self._path(name)}/pause")

    def resume(self, name: str) -> None:
        self._call("PUT", f"{self._path(name)}/resume")

    def stop(self, name: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """PUT .../stop (Connect >= 3.5): tasks shut down, config kept; offsets may then be reset."""
        self._call("PUT", f"{self._path(name)}/stop")
        return self.wait_for(name, lambda st: st["connector"]["state"] == "STOPPED", "STOPPED", timeout_s)

    def offsets(self, name: str) -> list[dict[str, Any]]:
        """The connector's stored source offsets ([] when none or not registered)."""
        answer = self._get_or_none(f"{self._path(name)}/offsets")
        offsets: list[dict[str, Any]] = (answer or {}).get("offsets", [])
        return offsets

    def patch_offsets(self, name: str, offsets: list[dict[str, Any]]) -> None:
        """PATCH .../offsets (KIP-875): only allowed while the connector is STOPPED."""
        self._call("PATCH", f"{self._path(name)}/offsets", {"offsets": offsets})

    def reset_offsets(self, name: str) -> None:
        """DELETE .../offsets: only allowed while the connector is STOPPED."""
        self._call("DELETE", f"{self._path(name)}/offsets")

    def restart(self, name: str, *, include_tasks: bool = True, only_failed: bool = True) -> dict[str, Any] | None:
        """Ask Connect to restart; the answer marks the instances it restarts as RESTARTING."""
        query = urllib.parse.urlencode({"includeTasks": str(include_tasks).lower(),
                                        "onlyFailed": str(only_failed).lower()})
        answer: dict[str, Any] | None = self._call("POST", f"{self._path(name)}/restart?{query}")
        return answer

    def delete(self, name: str, timeout_s: float = 30.0) -> DeleteResult:
        """DELETE the connector; an absent one is reported (existed=False), not an error.

        Connect keeps the connector's source offsets and Postgres keeps its replication slot, so a
        connector re-created under the same name resumes where this one stopped.
        """
        config = self.config(name)
        if config is None:
            return DeleteResult(name, existed=False)
        try:
            self._call("DELETE", self._path(name))
        except ConnectError as exc:
            if exc.status == 404:
                return DeleteResult(name, existed=False)
            raise
        deadline = time.monotonic() + timeout_s
        while name in (self.connectors() or []):
            if time.monotonic() > deadline:
                raise ConnectError(f"connector {name} still listed {timeout_s:.0f} s after DELETE")
            time.sleep(0.2)
        return DeleteResult(name, existed=True, slot_name=config.get("slot.name"),
                            database=config.get("database.dbname"))

    # --- waiting --------------------------------------------------------------------------
    def wait_for(self, name: str, done: Callable[[dict[str, Any]], bool], what: str,
                 timeout_s: float = 60.0) -> dict[str, Any]:
        """Poll the normalized status until ``done(status)``; ConnectError naming ``what`` on timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            st = self.state(name)
            if done(st):
                return st
            if time.monotonic() >= deadline:
                failed = first_failure(st)
                trace = f"\n{failed[0]} FAILED:\n{failed[1][:4000]}" if failed else ""
                raise ConnectError(f"connector {name} not {what} after {timeout_s:.0f} s: connector "
                                   f"{st['connector']['state']}, tasks "
                                   f"{[t['state'] for t in st['tasks']]}{trace}")
            time.sleep(0.3)

    def wait_running(self, name: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """Wait until the connector and all its tasks are RUNNING; a FAILED task raises with its trace."""

        def done(st: dict[str, Any]) -> bool:
            failed = first_failure(st)
            if failed:
                raise ConnectError(f"connector {name}: {failed[0]} FAILED:\n{failed[1][:4000]}", retriable=False)
            if st["connector"]["state"] == "ABSENT":
                return False
            return st["ok"] and bool(st["tasks"])

        return self.wait_for(name, done, "RUNNING", timeout_s)

    def wait_paused(self, name: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """Wait until the connector is PAUSED and every task PAUSED (a FAILED task stays FAILED)."""
        return self.wait_for(
            name, lambda st: st["connector"]["state"] == "PAUSED"
            and all(t["state"] in ("PAUSED", "FAILED") for t in st["tasks"]), "PAUSED", timeout_s)

    def wait_settled(self, name: str, timeout_s: float = 60.0, failed_grace_s: float = 5.0) -> dict[str, Any]:
        """After a restart: wait until nothing is UNASSIGNED/RESTARTING/FAILED.

        A FAILED state is accepted as the outcome only after ``failed_grace_s`` (Connect's status
        view may still show the failure from before the restart for a moment), so the caller gets
        the state that the restart led to, with its trace.
        """
        start = time.monotonic()

        def done(st: dict[str, Any]) -> bool:
            states = [st["connector"]["state"]] + [t["state"] for t in st["tasks"]]
            if any(s in _TRANSIENT for s in states):
                return False
            if "FAILED" in states:
                return time.monotonic() - start >= failed_grace_s
            return True

        return self.wait_for(name, done, "settled after restart", timeout_s)


def as_json(obj: Any) -> Any:
    """Dataclass results as plain dicts (for ``--json``)."""
    if isinstance(obj, ConfigProblem):
        return obj.as_dict()
    return asdict(obj)
