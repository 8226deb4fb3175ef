"""`relay connectors apply|status|render` against the real Kafka Connect."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def relay(*args):
    return subprocess.run([sys.executable, "-m", "relay", *args], capture_output=True, text=True, timeout=120)


def test_apply_twice_second_is_a_no_op(stack, settings):
    first = relay("connectors", "apply", "--json")
    assert first.returncode == 0, first.stderr
    second = relay("connectors", "apply", "--json")
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout)
    assert result["changed"] is False and result["status"]["connector"]["state"] == "RUNNING"


def test_status_and_render_never_show_the_password(stack, settings):
    status = relay("connectors", "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["tasks"][0]["state"] == "RUNNING"
    rendered = relay("connectors", "render")
    for out in (status, rendered, relay("connectors", "apply")):
        assert settings.pg_cdc_password not in out.stdout + out.stderr
    from relay.connect import ConnectClient

    live = ConnectClient(settings.connect_rest_url).config(settings.connector_name)
    assert live["database.password"].startswith("${file:")
