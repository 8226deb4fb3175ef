"""The endpoint of every long-running process: Prometheus metrics plus Kubernetes' probes.

- ``GET /healthz``: 200 while the process runs and its HTTP thread answers (liveness);
- ``GET /readyz``: 200 once the process said it is ready (``readiness.mark_ready()``), 503 with
  the reason before that and after ``readiness.mark_not_ready(reason)`` (readiness);
- anything else: the Prometheus exposition (``/metrics``).
"""

from __future__ import annotations

import socket
import threading
from socketserver import ThreadingMixIn
from typing import Any, Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class Readiness:
    """A process's readiness as ``/readyz`` reports it: not ready (``starting``) until
    :meth:`mark_ready`; :meth:`mark_not_ready` says why it is not (e.g. ``stopping``). Set from
    any thread (one assignment of an immutable pair)."""

    def __init__(self) -> None:
        self._state: tuple[bool, str] = (False, "starting")

    def mark_ready(self) -> None:
        self._state = (True, "ready")

    def mark_not_ready(self, reason: str) -> None:
        self._state = (False, reason or "not ready")

    @property
    def ready(self) -> bool:
        return self._state[0]

    @property
    def reason(self) -> str:
        return self._state[1]


def health_app(metrics: WsgiApp, readiness: Readiness) -> WsgiApp:
    """``metrics`` (a WSGI app) with ``/healthz`` and ``/readyz`` in front of it."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == HEALTH_PATH:
            return _text(start_response, "200 OK", "ok")
        if path == READY_PATH:
            ready, reason = readiness.ready, readiness.reason
            return _text(start_response, "200 OK" if ready else "503 Service Unavailable", reason)
        return metrics(environ, start_response)

    return app


def _text(start_response: StartResponse, status: str, body: str) -> list[bytes]:
    data = (body + "\n").encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))])
    return [data]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds: no access log line each."""


def start_server(app: WsgiApp, host: str, port: int) -> WSGIServer:
    """Serve ``app`` on host:port from a daemon thread (IPv6 when ``host`` is an IPv6 address)."""
    family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)[0][0]

    class Server(_Server):
        address_family = family

    server = make_server(host, port, app, server_class=Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name=f"metrics-{port}", daemon=True).start()
    return server
