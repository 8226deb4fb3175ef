"""A small Kafka Connect REST client (stdlib only); HTTP failures become ConnectError."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from relay.errors import ConnectError


@dataclass(frozen=True)
class ApplyResult:
    name: str
    changed: bool  # False: the running config already equalled the rendered one
    created: bool


class ConnectClient:
    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.url}{path}", data=data, method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            try:
                detail = json.loads(detail).get("message", detail)
            except ValueError:
                pass
            raise ConnectError(f"{method} {path}: HTTP {exc.code}: {detail}", status=exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ConnectError(f"{method} {path}: Kafka Connect at {self.url} unreachable: {exc}") from None
        return json.loads(raw) if raw else None

    def plugins(self) -> list[dict]:
        return self._call("GET", "/connector-plugins?connectorsOnly=false")

    def connectors(self) -> list[str]:
        return self._call("GET", "/connectors")

    def _get_or_none(self, path: str) -> Any:
        """GET ``path``; None when Connect answers 404 (no such connector)."""
        try:
            return self._call("GET", path)
        except ConnectError as exc:
            if exc.status == 404:
                return None
            raise

    def config(self, name: str) -> dict[str, str] | None:
        return self._get_or_none(f"/connectors/{name}/config")

    def status(self, name: str) -> dict | None:
        return self._get_or_none(f"/connectors/{name}/status")

    def apply(self, name: str, config: dict[str, str]) -> ApplyResult:
        """PUT the config unless the running one is identical (then nothing is sent)."""
        current = self.config(name)
        if current is not None:
            comparable = {k: v for k, v in current.items() if k != "name"}
            if comparable == config:
                return ApplyResult(name, changed=False, created=False)
        self._call("PUT", f"/connectors/{name}/config", config)
        return ApplyResult(name, changed=True, created=current is None)

    def wait_running(self, name: str, timeout_s: float = 60.0) -> dict:
        """Wait until the connector and all its tasks are RUNNING; a FAILED task raises with its trace."""
        deadline = time.monotonic() + timeout_s
        status: dict | None = None
        while time.monotonic() < deadline:
            status = self.status(name)
            if status:
                tasks = status.get("tasks", [])
                failed = [t for t in tasks if t.get("state") == "FAILED"]
                if failed or status["connector"].get("state") == "FAILED":
                    trace = (failed[0] if failed else status["connector"]).get("trace", "")
                    raise ConnectError(f"connector {name} FAILED:\n{trace[:4000]}", retriable=False)
                if status["connector"].get("state") == "RUNNING" and tasks and all(
                    t.get("state") == "RUNNING" for t in tasks
                ):
                    return status
            time.sleep(0.5)
        raise ConnectError(f"connector {name} not RUNNING after {timeout_s:.0f} s: {status}")
