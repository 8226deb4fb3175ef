"""The consumer's routing rules on its real pipeline, in memory (relay.testing.Harness): per-key
order across retries, duplicates, poison, Reject/Retry, the ladder, type filter, breaker, the
Postgres inbox's transaction, hooks. No Kafka: these are rules, proven at unit speed."""

import asyncio

import pytest

from relay import Consumer, Event, Reject, Retry
from relay.errors import ConfigError
from relay.testing import Harness


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


class Downstream:
    """A handler that fails ``failures[event_id or payload n]`` times (retriably), then records."""

    def __init__(self, failures=None, error=TimeoutError):
        self.failures, self.error, self.done = dict(failures or {}), error, []

    async def __call__(self, event: Event) -> None:
        n = event.payload["n"]
        if self.failures.get(n, 0) > 0:
            self.failures[n] -= 1
            raise self.error(f"{n} failed on purpose")
        self.done.append(n)


def consumer_with(handler, **options):
    c = Consumer("test")
    c.subscribe("order", **options)(handler)
    return c


def per_key(done, events):
    key_of = dict((n, k) for k, n in events)
    out = {}
    for n in done:
        out.setdefault(key_of[n], []).append(n)
    return out


async def feed(t, events):
    for key, n in events:
        await t.deliver("order", key=key, payload={"n": n})


def test_later_events_of_a_failing_key_wait_other_keys_flow():
    events = [("A", "a1"), ("B", "b1"), ("A", "a2"), ("B", "b2"), ("A", "a3"), ("C", "c1")]
    down = Downstream({"a1": 2})

    async def main():
        async with Harness(consumer_with(down)) as t:
            await feed(t, events)
            assert down.done == ["b1", "b2", "c1"], "B and C flow while A waits"
            await t.advance(3600)
            return t
    t = run(main())
    assert per_key(down.done, events) == {"A": ["a1", "a2", "a3"], "B": ["b1", "b2"], "C": ["c1"]}
    assert [stage for _, stage in t.retried] == [1, 2] and t.dead_letters == []
    assert t.pipelines["outbox.event.order"].router.parking.parked_keys() == 0


def test_failures_in_the_middle_and_in_several_keys_keep_every_key_in_order():
    events = [(k, f"{k}{i}") for i in range(6) for k in "XYZ"]
    down = Downstream({"X2": 1, "X4": 2, "Y0": 3, "Z5": 1, "X5": 1})

    async def main():
        async with Harness(consumer_with(down)) as t:
            await feed(t, events)
            await t.advance(3600)
    run(main())
    assert per_key(down.done, events) == {k: [f"{k}{i}" for i in range(6)] for k in "XYZ"}


def test_an_event_that_fails_while_behind_leads_its_key_and_order_holds():
    events = [("K", "e1"), ("K", "e2"), ("K", "e3"), ("K", "e4")]
    down = Downstream({"e1": 1, "e2": 2, "e3": 1})

    async def main():
        async with Harness(consumer_with(down)) as t:
            await feed(t, events)
            await t.advance(3600)
    run(main())
    assert down.done == ["e1", "e2", "e3", "e4"]


def test_exhausted_retries_dead_letter_and_release_the_key():
    down = Downstream({"a1": 99})

    async def main():
        async with Harness(consumer_with(down, retry_delays=(1, 5))) as t:
            await feed(t, [("A", "a1"), ("A", "a2")])
            await t.advance(2)
            assert down.done == [] and len(t.attempts) == 2
            await t.advance(10)
            return t
    t = run(main())
    (letter,) = t.dead_letters
    assert (letter.reason, letter.attempts, letter.key) == ("exhausted", 3, "A")
    assert "TimeoutError: a1 failed on purpose" == letter.error
    assert down.done == ["a2"], "the key's next event is handled once its head is dead"


def test_duplicates_are_skipped_and_poison_is_dead_lettered_with_its_reason():
    down = Downstream()

    async def main():
        async with Harness(consumer_with(down)) as t:
            first = await t.deliver("order", key="A", payload={"n": 1})
            await t.deliver("order", key="B", value=b"{not json")
            await t.deliver("order", key="B", payload={"n": 2}, headers={"id": b"not-a-uuid"})
            await t.redeliver(first)
            await t.deliver("order", key="B", payload={"n": 3})
            return t
    t = run(main())
    assert down.done == [1, 3]
    assert [d.reason for d in t.dead_letters] == ["decode", "decode"]
    assert "not JSON" in t.dead_letters[0].error and "expected a UUID" in t.dead_letters[1].error


def test_reject_dead_letters_at_once_and_does_not_hold_the_key():
    async def handler(event: Event) -> None:
        if event.payload["n"] == 1:
            raise Reject("order has no total")
        done.append(event.payload["n"])
    done = []

    async def main():
        async with Harness(consumer_with(handler)) as t:
            await feed(t, [("A", 1), ("A", 2)])
            return t
    t = run(main())
    assert [(d.reason, d.error, d.attempts) for d in t.dead_letters] == [
        ("rejected", "Reject: order has no total", 1)]
    assert done == [2] and t.retried == []


def test_retry_waits_at_least_the_delay_the_handler_asked_for():
    calls = []

    async def handler(event: Event) -> None:
        calls.append(event.payload["n"])
        if len(calls) == 1:
            raise Retry("rate limited", delay=120)

    async def main():
        async with Harness(consumer_with(handler, retry_delays=(1, 10))) as t:
            await t.deliver("order", key="A", payload={"n": 1})
            await t.advance(119)
            assert calls == [1], "not before the delay the handler asked for"
            await t.advance(2)
            return t
    t = run(main())
    assert calls == [1, 1] and t.dead_letters == []


def test_terminal_errors_skip_the_ladder():
    down = Downstream({"a": 1}, error=ValueError)

    async def main():
        async with Harness(consumer_with(down)) as t:
            await t.deliver("order", key="A", payload={"n": "a"})
            return t
    t = run(main())
    assert [(d.reason, d.attempts) for d in t.dead_letters] == [("handler", 1)] and t.retried == []


def test_type_filter_acks_other_types_without_calling_the_handler():
    seen = []
    c = Consumer("billing")

    @c.subscribe("order", types={"OrderPlaced"})
    def on_placed(event: Event) -> None:  # a sync handler
        seen.append(event.type)

    async def main():
        async with Harness(c) as t:
            for kind in ("OrderPlaced", "OrderShipped", "OrderPlaced"):
                await t.deliver("order", key="A", type=kind, payload={})
            return t
    t = run(main())
    assert seen == ["OrderPlaced", "OrderPlaced"] and t.ignored == 1


def test_the_breaker_stops_taking_records_then_probes():
    down = Downstream({f"k{i}": 1 for i in range(5)})

    async def main():
        async with Harness(consumer_with(down, breaker_failures=5, breaker_open_s=30, retry_delays=(300,))) as t:
            await feed(t, [(f"K{i}", f"k{i}") for i in range(5)])
            await t.deliver("order", key="Z", payload={"n": "z"})
            assert down.done == [], "open: the next record waits in its topic"
            await t.advance(31)
            assert down.done == ["z"], "the probe went through and closed the circuit"
            await t.advance(300)
    run(main())
    assert sorted(down.done) == ["k0", "k1", "k2", "k3", "k4", "z"]


def test_postgres_inbox_commits_effect_and_publish_together_once():
    c = Consumer("billing")
    attempts = []

    @c.subscribe("payment", inbox="postgres")
    async def on_payment(event: Event, tx) -> None:
        attempts.append(tx.attempt)
        await tx.execute("INSERT INTO invoices VALUES (%s)", (event.key,))
        await tx.outbox.write(aggregatetype="invoice", aggregateid=event.key, type="InvoiceIssued", payload={})
        if len(attempts) == 1:
            raise ConnectionError("lost the connection after the writes")

    async def main():
        async with Harness(c) as t:
            first = await t.deliver("payment", key="p1", payload={})
            assert t.statements == [] and t.published == [], "a failed attempt commits nothing"
            await t.advance(5)
            await t.redeliver(first)
            return t
    t = run(main())
    assert attempts == [1, 2]
    assert t.statements == [("INSERT INTO invoices VALUES (%s)", ("p1",))]
    assert [p["type"] for p in t.published] == ["InvoiceIssued"]


def test_hooks_share_state_with_handlers():
    c = Consumer("billing")
    log = []

    @c.on_startup
    async def open_client(ctx) -> None:
        ctx.state["client"] = "connected"

    @c.on_shutdown
    def close_client(ctx) -> None:
        log.append(("closed", ctx.state["client"]))

    @c.subscribe("order")
    async def on_order(event: Event, ctx) -> None:
        log.append((ctx.state["client"], ctx.attempt, ctx.consumer))

    async def main():
        async with Harness(c) as t:
            await t.deliver("order", key="A", payload={})
    run(main())
    assert log == [("connected", 1, "billing"), ("closed", "connected")]


def test_an_unknown_topic_is_a_clear_error():
    async def main():
        async with Harness(consumer_with(Downstream())) as t:
            await t.deliver("payment", key="A", payload={})
    with pytest.raises(KeyError, match="outbox.event.payment"):
        run(main())


def test_batch_handler_in_the_harness_gets_what_waits_and_a_bad_event_goes_alone():
    consumer = Consumer("bulk")
    calls = []

    @consumer.subscribe("order", batch=10)
    async def bulk(events: list[Event]) -> None:
        calls.append([e.payload["n"] for e in events])
        if any(e.payload["n"] == 3 for e in events):
            raise ValueError("n=3 is not a valid order")  # terminal: dead letter, no retries

    async def main():
        async with Harness(consumer) as t:
            for n in range(1, 6):
                await t.deliver("order", key=f"k{n}", payload={"n": n}, run=False)
            await t.run()
            return t
    t = asyncio.run(main())
    assert calls == [[1, 2, 3, 4, 5], [1, 2], [3, 4, 5], [3], [4, 5]]  # halves until 3 is alone
    assert sorted(e.payload["n"] for e in t.handled) == [1, 2, 4, 5]
    assert [(d.reason, d.error) for d in t.dead_letters] == [("handler", "ValueError: n=3 is not a valid order")]


def test_postgres_batch_handler_in_the_harness_one_call_one_commit_a_bad_event_alone():
    consumer = Consumer("bulk-pg")
    calls = []

    @consumer.subscribe("payment", inbox="postgres", batch=10)
    async def bulk(events: list[Event], tx) -> None:
        calls.append([e.payload["n"] for e in events])
        for e in events:
            await tx.execute("INSERT INTO effects (event_id) VALUES (%s)", (e.id,))
            await tx.outbox.write(aggregatetype="receipt", aggregateid=e.key, type="Paid",
                                  payload={"n": e.payload["n"]})
        if any(e.payload["n"] == 3 for e in events):
            raise Reject("n=3 is refused")  # the list rolls back; alone, n=3 is dead-lettered

    async def main():
        async with Harness(consumer) as t:
            first = await t.deliver("payment", key="k1", payload={"n": 1}, run=False)
            for n in range(2, 6):
                await t.deliver("payment", key=f"k{n}", payload={"n": n}, run=False)
            await t.deliver("payment", key="k1", payload={"n": 1}, id=first.header("id"), run=False)
            await t.run()
            return t
    t = asyncio.run(main())
    assert calls == [[1, 2, 3, 4, 5], [1, 2], [3, 4, 5], [3], [4, 5]]  # the copy of 1 never reaches it
    assert sorted(e.payload["n"] for e in t.handled) == [1, 2, 4, 5]
    assert len(t.statements) == 4 and sorted(p["payload"]["n"] for p in t.published) == [1, 2, 4, 5]
    assert [d.reason for d in t.dead_letters] == ["rejected"]


def test_postgres_batch_handler_needs_an_async_events_tx_signature():
    consumer = Consumer("bulk-pg-sync")
    with pytest.raises(ConfigError, match="needs `async def"):
        consumer.subscribe("payment", inbox="postgres", batch=10)(lambda events, tx: None)


@pytest.mark.parametrize("inbox", ["table", "postgres"])
def test_a_batch_handler_call_is_one_latency_observation(inbox):
    """relay_handler_seconds: a batch handler's call is observed once, for its duration (the
    events it took are not observed one by one at collection, which took no time)."""
    consumer = Consumer("bulk-latency")

    async def table_bulk(events: list[Event]) -> None:
        await asyncio.sleep(0.05)

    async def pg_bulk(events: list[Event], tx) -> None:
        await asyncio.sleep(0.05)

    consumer.subscribe("order", inbox=inbox, batch=10)(table_bulk if inbox == "table" else pg_bulk)

    async def main():
        async with Harness(consumer) as t:
            for n in range(4):
                await t.deliver("order", key=f"k{n}", payload={"n": n}, run=False)
            await t.run()
            return t
    t = asyncio.run(main())
    assert len(t.handled) == 4
    samples = {s.name: s.value for m in t.registry.collect() if m.name == "relay_handler_seconds" for s in m.samples}
    assert samples["relay_handler_seconds_count"] == 1 and samples["relay_handler_seconds_sum"] >= 0.05
