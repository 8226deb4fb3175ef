"""The native stack's sasl_ssl profile without starting anything: files, names, the profile lock."""

import stat

import pytest

from relay.config import load_settings
from relay.errors import StackError
from relay.stack.secure import SecureProfile, write_private


def profile(tmp_path, security="sasl_ssl", host="127.0.0.1"):
    return SecureProfile(load_settings({"RELAY_STACK_DIR": str(tmp_path), "RELAY_STACK_SECURITY": security,
                                        "RELAY_HOST": host}))


def test_a_stack_keeps_the_profile_its_data_was_made_with(tmp_path):
    profile(tmp_path, "plaintext").check_profile(has_data=True)  # an existing stack from before: plaintext
    with pytest.raises(StackError, match="RELAY_STACK_SECURITY = 'sasl_ssl' but this stack's data was made with "
                                         "'plaintext'"):
        profile(tmp_path, "sasl_ssl").check_profile(has_data=True)
    fresh = tmp_path / "fresh"
    profile(fresh, "sasl_ssl").check_profile(has_data=False)
    with pytest.raises(StackError, match="made with 'sasl_ssl'"):
        profile(fresh, "plaintext").check_profile(has_data=True)


def test_passwords_are_private_files_and_env_files_refer_to_them(tmp_path):
    p = profile(tmp_path)
    p.dir.mkdir(parents=True)
    pw = p.password("relay-orders")
    assert len(pw) >= 24 and p.password("relay-orders") == pw
    assert stat.S_IMODE(p.password_file("relay-orders").stat().st_mode) == 0o600
    p.password_file("cut-short").write_text("")
    assert p.password("cut-short")  # an empty file is made again, never the empty password
    env = p.env_file("relay-orders").read_text()
    assert pw not in env and f"RELAY_KAFKA_SASL_PASSWORD_FILE={p.password_file('relay-orders')}" in env
    assert "RELAY_PG_SSLMODE=verify-full" in env and "RELAY_CONNECT_USERNAME" not in env
    assert "RELAY_CONNECT_USERNAME=operator" in p.env_file("admin").read_text()


def test_write_private_replaces_a_loose_file(tmp_path):
    target = tmp_path / "server.properties"
    target.write_text("old")
    target.chmod(0o644)
    write_private(target, "new")
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o600


def test_the_certificate_names_the_stack_host(tmp_path):
    assert profile(tmp_path).server_names() == ["DNS:localhost", "IP:127.0.0.1"]
    assert profile(tmp_path, host="10.0.0.5").server_names()[-1] == "IP:10.0.0.5"
    assert profile(tmp_path, host="relay.internal").server_names()[-1] == "DNS:relay.internal"
