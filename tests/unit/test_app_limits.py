"""relay.consume._faust.app.create_app: the worker's Faust producer and fetches carry an event of the
declared size (RELAY_MAX_EVENT_BYTES plus headers), so it can be forwarded to a retry stage or a
dead-letter topic (no I/O: building an app connects nowhere)."""

from relay.config import RECORD_OVERHEAD_BYTES, load_settings
from relay.consume._faust.app import create_app


def test_producer_and_fetch_accept_the_declared_event_size(tmp_path):
    settings = load_settings({}, stack_dir=tmp_path, max_event_bytes=8 * 2**20)
    conf = create_app(settings, "limits").conf
    assert conf.producer_max_request_size == 8 * 2**20 + RECORD_OVERHEAD_BYTES == settings.max_record_bytes
    assert conf.consumer_max_fetch_size >= settings.max_record_bytes
    small = create_app(load_settings({}, stack_dir=tmp_path, max_event_bytes=2048), "small").conf
    assert small.producer_max_request_size == 2048 + RECORD_OVERHEAD_BYTES
    assert small.consumer_max_fetch_size == 4 * 2**20  # never below Faust's default
