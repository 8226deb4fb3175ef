"""Every test in this folder runs against each implementation of the outbox contract: the CDC
relay (Debezium in Kafka Connect) and the polling relay (see tests/support/relays.py)."""

import pytest

from tests.support.relays import CdcRelay, poller_relay


@pytest.fixture(scope="module", params=["cdc", "poller"])
def relay_impl(request, stack, settings):
    impl = CdcRelay(stack, settings) if request.param == "cdc" else poller_relay(stack, settings)
    impl.start()
    yield impl
    impl.stop()
