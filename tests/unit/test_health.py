"""The metrics endpoint answers Kubernetes' probes: /healthz while the process runs, /readyz once ready."""

import socket
import urllib.error
import urllib.request

import pytest

from relay.errors import ConfigError
from relay.metrics import HEALTH_PATH, READY_PATH, ConsumerMetrics, PollerMetrics, Readiness


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def served():
    metrics = ConsumerMetrics.create()
    port = free_port()
    server = metrics.serve("127.0.0.1", port)
    assert server is not None
    yield metrics, port
    server.shutdown()
    server.server_close()


def test_paths_are_the_probes_of_k8s():
    assert (HEALTH_PATH, READY_PATH) == ("/healthz", "/readyz")


def test_healthz_answers_while_the_process_runs(served):
    _, port = served
    assert get(port, "/healthz") == (200, "ok\n")


def test_readyz_is_503_until_the_worker_says_it_is_ready(served):
    metrics, port = served
    assert get(port, "/readyz") == (503, "starting\n")
    metrics.readiness.mark_ready()
    assert get(port, "/readyz") == (200, "ready\n")
    metrics.readiness.mark_not_ready("stopping")
    assert get(port, "/readyz") == (503, "stopping\n")
    assert get(port, "/healthz")[0] == 200  # not ready is not dead


def test_metrics_are_still_served(served):
    metrics, port = served
    metrics.handled.labels("outbox.event.order").inc()
    status, body = get(port, "/metrics")
    assert status == 200
    assert 'relay_events_handled_total{topic="outbox.event.order"} 1.0' in body


def test_each_served_object_has_its_own_readiness():
    one, other = ConsumerMetrics.create(), PollerMetrics.create()
    assert isinstance(one.readiness, Readiness) and one.readiness is one.readiness
    one.readiness.mark_ready()
    assert one.readiness.ready and not other.readiness.ready


def test_readiness_flag():
    r = Readiness()
    assert (r.ready, r.reason) == (False, "starting")
    r.mark_ready()
    assert (r.ready, r.reason) == (True, "ready")
    r.mark_not_ready("")
    assert (r.ready, r.reason) == (False, "not ready")


def test_port_zero_serves_nothing():
    assert ConsumerMetrics.create().serve("127.0.0.1", 0) is None


def test_port_in_use_is_a_config_error(served):
    _, port = served
    with pytest.raises(ConfigError, match=f"metrics port 127.0.0.1:{port}"):
        ConsumerMetrics.create().serve("127.0.0.1", port)
