"""Pure logic of the Connect client: validation answers, status, redaction, --set parsing.

The sample answers are trimmed copies of what Kafka Connect 4.1 with Debezium 3.5 returned.
"""

import pytest
import typer

from relay.cli.connectors import parse_overrides
from relay.connect.client import (
    REDACTED,
    ConfigProblem,
    first_failure,
    normalize_status,
    parse_properties,
    parse_validation,
    provider_references,
    redact,
    restarting,
)


def _entry(name, errors=(), value=None):
    return {"definition": {"name": name, "type": "STRING"},
            "value": {"name": name, "value": value, "recommended_values": [], "errors": list(errors),
                      "visible": True}}


VALIDATE_ANSWER = {
    "name": "io.debezium.connector.postgresql.PostgresConnector",
    "error_count": 3,
    "groups": ["Common", "Postgres"],
    "configs": [
        _entry("name", value="relay-outbox"),
        _entry("database.password"),
        _entry("plugin.name", ["The 'plugin.name' value is invalid: Value must be one of decoderbufs, pgoutput"]),
        _entry("errors.log.include.messages",
               ["Invalid value s3cret for configuration errors.log.include.messages: Expected value to be "
                "either true or false"], value="s3cret"),
        _entry("slot.name", ["The 'slot.name' value is invalid: Valid replication slot name must contain only "
                             "digits, lowercase characters and underscores with length <= 63"]),
    ],
}


def test_every_key_with_errors_is_a_problem_in_the_order_we_sent_them():
    sent = {"slot.name": "", "plugin.name": "nope", "name": "relay-outbox",
            "errors.log.include.messages": "${file:/s.properties:pg.password}"}
    problems = parse_validation(VALIDATE_ANSWER, sent)
    assert [p.key for p in problems] == ["slot.name", "plugin.name", "errors.log.include.messages"]
    assert problems[0] == ConfigProblem("slot.name", (VALIDATE_ANSWER["configs"][4]["value"]["errors"][0],), "")
    assert problems[1].value == "nope"


def test_problem_value_is_what_we_sent_never_the_resolved_one():
    sent = {"errors.log.include.messages": "${file:/s.properties:pg.password}"}
    (problem,) = [p for p in parse_validation(VALIDATE_ANSWER, sent) if p.key == "errors.log.include.messages"]
    assert problem.value == "${file:/s.properties:pg.password}"
    assert problem.as_dict()["value"] == "${file:/s.properties:pg.password}"


def test_a_key_we_did_not_send_has_value_none():
    answer = {"error_count": 1, "configs": [_entry("database.hostname", ["Missing required configuration"])]}
    (problem,) = parse_validation(answer, {})
    assert problem.key == "database.hostname" and problem.value is None


def test_valid_answer_has_no_problems():
    answer = {"error_count": 0, "configs": [_entry("name", value="x"), _entry("slot.name")]}
    assert parse_validation(answer, {"slot.name": "x"}) == []


def test_errors_counted_but_attached_to_no_key_are_not_lost():
    problems = parse_validation({"error_count": 2, "configs": []}, {})
    assert len(problems) == 1 and "2 error(s)" in problems[0].errors[0]


def test_redact_replaces_secrets_everywhere_longest_first():
    data = {"errors": ["Invalid value s3cret-long for x", "user \"s3cret\""], "n": 1, "s3cret": None}
    out = redact(data, ["s3cret", "s3cret-long", ""])
    assert out == {"errors": [f"Invalid value {REDACTED} for x", f"user \"{REDACTED}\""], "n": 1, REDACTED: None}
    assert redact("no secrets", []) == "no secrets"


def test_provider_references():
    cfg = {"database.password": "${file:/stack/connect/secrets.properties:pg.password}",
           "route": "outbox.event.${routedByValue}", "x": "${env:HOME}", "plain": "v"}
    assert provider_references(cfg) == [("file", "/stack/connect/secrets.properties", "pg.password"),
                                        ("env", "", "HOME")]


def test_parse_properties():
    text = "# comment\n! also\npg.password=a=b c\nk2 : v2\n\nlonely\n"
    assert parse_properties(text) == {"pg.password": "a=b c", "k2": "v2", "lonely": ""}


RUNNING = {"name": "relay-outbox", "type": "source",
           "connector": {"state": "RUNNING", "worker_id": "127.0.0.1:58083", "version": "3.5.0.Final"},
           "tasks": [{"id": 1, "state": "FAILED", "worker_id": "w2", "trace": "org.x.Boom\n\tat y"},
                     {"id": 0, "state": "RUNNING", "worker_id": "w1"}]}


def test_normalize_status_has_every_field_and_ok():
    st = normalize_status(RUNNING, "relay-outbox")
    assert st["connector"] == {"state": "RUNNING", "worker_id": "127.0.0.1:58083", "trace": None}
    assert st["tasks"] == [{"id": 0, "state": "RUNNING", "worker_id": "w1", "trace": None},
                           {"id": 1, "state": "FAILED", "worker_id": "w2", "trace": "org.x.Boom\n\tat y"}]
    assert st["ok"] is False
    assert first_failure(st) == ("task 1", "org.x.Boom\n\tat y")


def test_normalize_status_absent_connector():
    st = normalize_status(None, "gone")
    assert st["connector"]["state"] == "ABSENT" and st["tasks"] == [] and st["ok"] is False
    assert first_failure(st) is None


def test_restarting_names_the_instances_connect_restarts():
    answer = {"connector": {"state": "RUNNING"},
              "tasks": [{"id": 0, "state": "RESTARTING"}, {"id": 1, "state": "RUNNING"}]}
    assert restarting(answer) == ["task 0"]
    assert restarting({"connector": {"state": "RESTARTING"}, "tasks": []}) == ["connector"]
    assert restarting(None) == []


def test_overrides():
    assert parse_overrides(["plugin.name=nope", "slot.name=", "q=a=b"]) == {
        "plugin.name": "nope", "slot.name": "", "q": "a=b"}
    assert parse_overrides(None) == {}
    for bad in (["novalue"], ["=x"]):
        with pytest.raises(typer.BadParameter):
            parse_overrides(bad)


def test_transient_refusals_are_the_ones_connect_asks_to_retry():
    from relay.connect.client import transient
    from relay.errors import ConnectError

    assert transient(ConnectError("PUT /connectors/x/stop: HTTP 500: Failed to write to config topic; this may "
                                  "be due to a transient error and the request can be safely retried", status=500))
    assert transient(ConnectError("HTTP 409: Cannot complete request because of a conflicting operation",
                                  status=409))
    assert not transient(ConnectError("HTTP 500: Request timed out", status=500))
    assert not transient(ConnectError("HTTP 400: bad config", status=400))
    assert not transient(ConnectError("unreachable"))


def test_a_transient_refusal_is_sent_again_and_a_lasting_one_is_raised(monkeypatch):
    from relay.connect import client as mod
    from relay.errors import ConnectError

    monkeypatch.setattr(mod.time, "sleep", lambda s: None)
    c = mod.ConnectClient("http://127.0.0.1:1", transient_s=5.0)
    answers = [ConnectError("HTTP 500: ... can be safely retried", status=500), {"ok": True}]

    def once(method, path, body=None):
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a

    monkeypatch.setattr(c, "_call_once", once)
    assert c._call("PUT", "/connectors/x/stop") == {"ok": True}

    calls = []

    def refuse(method, path, body=None):
        calls.append(path)
        raise ConnectError("HTTP 400: no", status=400)

    monkeypatch.setattr(c, "_call_once", refuse)
    with pytest.raises(ConnectError, match="400"):
        c._call("PUT", "/connectors/x/config", {})
    assert len(calls) == 1
