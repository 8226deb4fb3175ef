"""relay.Consumer's declarations: every mistake is a ConfigError naming the field, the value and
what was expected; options default from Settings; `relay worker` finds consumers."""

import pytest

from relay import ConfigError, Consumer, Event, load_settings
from relay.consume.loader import load_consumer


async def handler(event: Event) -> None: ...


def test_every_problem_of_a_subscription_is_reported_at_once():
    c = Consumer("billing")
    with pytest.raises(ConfigError) as err:
        c.subscribe("order", inbox="redis", concurrency=0, retry_delays=(1, -5), colour="red")(handler)
    text = str(err.value)
    assert "field 'inbox' = 'redis'; expected 'table' or 'postgres'" in text
    assert "field 'concurrency' = 0; expected an integer >= 1" in text
    assert "retry_delays" in text and "(1, -5)" in text
    assert "options ['colour']: unknown" in text


def test_a_postgres_inbox_handler_must_be_async_and_take_tx():
    c = Consumer("billing")
    with pytest.raises(ConfigError, match="inbox='postgres' needs `async def on_payment"):
        @c.subscribe("payment", inbox="postgres")
        def on_payment(event, tx): ...
    with pytest.raises(ConfigError, match="takes 3 required arguments"):
        c.subscribe("order")(lambda a, b, c: None)


def test_one_topic_per_subscription_and_exactly_one_of_aggregate_type_or_topic():
    c = Consumer("billing")
    c.subscribe("order")(handler)
    with pytest.raises(ConfigError, match="already subscribed"):
        c.subscribe(topic="outbox.event.order")(handler)
    with pytest.raises(ConfigError, match="exactly one"):
        c.subscribe("order", topic="x")(handler)
    with pytest.raises(ConfigError, match="field 'store'"):
        Consumer("x", store="s3")


def test_options_default_from_settings_and_override_per_subscription():
    s = load_settings({"RELAY_RETRY_DELAYS": "2s,1m", "RELAY_CONSUMER_CONCURRENCY": "3"})
    c = Consumer("billing")
    c.subscribe("order")(handler)
    c.subscribe("payment", concurrency=8, retry_delays=[5])(handler)
    first, second = (sub.options.resolve(s) for sub in c.subscriptions)
    assert (first.retry_delays, first.concurrency, first.breaker_failures) == ((2.0, 60.0), 3, s.breaker_failures)
    assert (second.retry_delays, second.concurrency) == ((5.0,), 8)


def test_subscribe_returns_the_handler_unchanged():
    c = Consumer("billing")
    assert c.subscribe("order")(handler) is handler


consumer = Consumer("loader-test")
consumer.subscribe("order")(handler)


def make(settings):
    return consumer


def test_loader_finds_objects_factories_and_entry_points():
    s = load_settings({})
    assert load_consumer("tests.unit.test_consumer_api:consumer", s) is consumer
    assert load_consumer("tests.unit.test_consumer_api:make", s) is consumer
    assert load_consumer("orders", s).name == "relay-orders"  # the demo's entry point
    with pytest.raises(ConfigError, match="not a registered name"):
        load_consumer("billing", s)
    with pytest.raises(ConfigError, match="cannot import 'no_such_module'"):
        load_consumer("no_such_module:consumer", s)
    with pytest.raises(ConfigError, match="has no attribute 'nope'"):
        load_consumer("tests.unit.test_consumer_api:nope", s)
    with pytest.raises(ConfigError, match="is a function; expected a relay.Consumer"):
        load_consumer("tests.unit.test_consumer_api:handler", s)


def test_the_faust_engine_refuses_batches_naming_each():
    """Batches run on the kafka engine only (an unexplained loss on Faust with them)."""
    pytest.importorskip("faust")
    from relay.consume._faust.worker import refuse_batches

    c = Consumer("faust-batches")

    @c.subscribe("payment", inbox="postgres", batch=50)
    async def on_payments(events, tx) -> None: ...

    @c.subscribe("order")
    async def on_order(event) -> None: ...

    with pytest.raises(ConfigError) as info:
        refuse_batches(c, load_settings({"RELAY_CONSUMER_ENGINE": "faust", "RELAY_CONSUMER_BATCH_SIZE": "20"}))
    text = str(info.value)
    assert "'outbox.event.payment': batch=50" in text and "RELAY_CONSUMER_BATCH_SIZE = 20" in text
    assert "outbox.event.order" not in text
    one = Consumer("faust-one")
    one.subscribe("order")(on_order)
    refuse_batches(one, load_settings({"RELAY_CONSUMER_ENGINE": "faust"}))  # unset: 1 on Faust, accepted
