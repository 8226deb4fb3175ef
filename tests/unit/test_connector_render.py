"""Connector template rendering: placeholders filled, Connect's own references kept, no secrets."""

import pytest

from relay.config import load_settings
from relay.connect.render import render, render_outbox_connector
from relay.errors import ConfigError


def test_outbox_connector_contract():
    s = load_settings({"RELAY_PG_CDC_PASSWORD": "s3cret-Pa55"})
    cfg = render_outbox_connector(s)
    assert cfg["connector.class"] == "io.debezium.connector.postgresql.PostgresConnector"
    assert cfg["plugin.name"] == "pgoutput"
    assert cfg["publication.autocreate.mode"] == "disabled"
    assert cfg["table.include.list"] == "public.outbox,public.outbox_avro"
    assert cfg["transforms.outbox.type"] == "io.debezium.transforms.outbox.EventRouter"
    assert cfg["transforms.outbox.route.topic.replacement"] == "outbox.event.${routedByValue}"
    assert cfg["transforms.outbox.table.field.event.key"] == "aggregateid"
    assert cfg["key.converter"].endswith("StringConverter")
    # bytes (Avro payloads) pass through; JSON text goes to StringConverter
    assert cfg["value.converter"] == "io.debezium.converters.BinaryDataConverter"
    assert cfg["value.converter.delegate.converter.type"].endswith("StringConverter")
    assert "pg_logical_emit_message(true," in cfg["heartbeat.action.query"]
    assert cfg["poll.interval.ms"] == str(s.poll_interval_ms)
    assert cfg["database.password"].startswith("${file:") and cfg["database.password"].endswith(":pg.password}")
    assert not any("s3cret-Pa55" in v for v in cfg.values())
    # an event of the declared size fits the task's producer and the topics it creates
    assert int(cfg["producer.override.max.request.size"]) == s.max_record_bytes > s.max_event_bytes
    assert cfg["topic.creation.default.max.message.bytes"] == str(s.max_record_bytes)
    assert not any("{{" in v for v in cfg.values())
    assert not any(k.startswith("_") for k in cfg)


def test_unknown_placeholder_is_an_error_naming_it():
    with pytest.raises(ConfigError, match=r"\{\{slot_nme\}\}"):
        render({"slot.name": "{{slot_nme}}"}, {"slot_name": "x"})


def test_connect_references_pass_through():
    assert render({"a": "${file:/x:k}-{{v}}"}, {"v": "1"}) == {"a": "${file:/x:k}-1"}


def test_latency_settings_reach_the_connector():
    """Issue 15: Debezium's poll interval bounds commit -> Kafka latency; it is rendered from settings."""
    cfg = render_outbox_connector(load_settings({}))
    assert cfg["poll.interval.ms"] == "5"
    # one exactly-once transaction per poll: records are visible as soon as their batch commits
    assert cfg["exactly.once.support"] == "required"
    assert cfg["transaction.boundary"] == "poll"
    assert int(cfg["heartbeat.interval.ms"]) > 0
    assert render_outbox_connector(load_settings({"RELAY_POLL_INTERVAL_MS": "50"}))["poll.interval.ms"] == "50"
    # after every transaction Debezium reads the stored offsets back (to confirm the slot position);
    # a read ending on a transaction marker waited the consumer's 500 ms default fetch wait
    assert int(cfg["consumer.override.fetch.max.wait.ms"]) <= 10
    # a deleted routed topic stalls the task's commits while its producer remembers the topic
    assert int(cfg["producer.override.metadata.max.idle.ms"]) <= 10_000
