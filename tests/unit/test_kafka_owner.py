"""Owner: the event loop's consumer calls run on the thread that serves them."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from relay.consume._kafka.owner import Owner


def test_calls_run_on_the_serving_thread_and_return_their_results():
    threads = ThreadPoolExecutor(2)
    owner = Owner(threads)
    owner.polling = True
    ran_on, told = [], []

    def poller(stop):
        while not stop.is_set():
            owner.serve()

    async def main():
        stop = threading.Event()
        poll = threading.Thread(target=poller, args=(stop,), name="poller")
        poll.start()
        try:
            owner.tell(lambda: told.append(threading.current_thread().name))
            assert await owner.call(lambda: ran_on.append(threading.current_thread().name) or 42) == 42
            with pytest.raises(ValueError):
                await owner.call(lambda: int("x"))
            owner.tell(lambda: 1 / 0)  # logged, nobody to tell
            assert await owner.call(lambda: "after") == "after"
        finally:
            stop.set()
            poll.join()

    asyncio.run(main())
    assert ran_on == ["poller"] and told == ["poller"]


def test_without_a_poller_calls_run_on_a_worker_thread():
    owner = Owner(ThreadPoolExecutor(1, thread_name_prefix="spare"))
    name = asyncio.run(owner.call(lambda: threading.current_thread().name))
    assert name.startswith("spare")
