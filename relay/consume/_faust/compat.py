"""Every use of faust-streaming's (and, through it, aiokafka's) private API, in one place, checked
against the versions it was verified with (a newer Faust must be re-verified before the pin in
pyproject moves). :func:`check` is the single version gate; ``relay.consume._faust.worker.build_app``
calls it before it creates the app.

Reads and writes of private state (the other modules of relay.consume._faust call these only):

- :func:`bind_event`: ``faust.streams._current_event`` (lanes hand events to other tasks);
- :func:`commit_state` / :func:`forget_acked`: the consumer's commit bookkeeping ``_acked``,
  ``_gap``, ``_committed_offset`` and ``_acked_index`` (relay.consume._faust.commits);
- :func:`unacked_messages`: the consumer's ``_unacked_messages`` (relay.consume._faust.waits);
- :func:`fetch_position`: aiokafka's fetch position through ``_thread``, ``_ensure_consumer()``
  and ``_subscription`` (relay.consume._faust.gauges).

Private hooks overridden in subclasses, which stay next to their reason (moving a subclass here
would move the module it is about); :data:`OVERRIDES` lists them, and
tests/unit/test_faust_compat.py allows no other private name outside this module:

- ``RelayApp._new_transport`` (relay.consume._faust.app): Faust's factory of the app's transport,
  overridden to use relay.consume._faust.commits.Transport;
- ``Consumer._new_offset`` (relay.consume._faust.commits): Faust's commit-offset rule, replaced by
  ``next_commit`` (its state is read through :func:`commit_state` / :func:`forget_acked`).
"""

from __future__ import annotations

import weakref
from typing import Any, MutableSet, Optional

VERIFIED = ("0.15",)  # faust-streaming minor versions whose private API these touchpoints match

# module -> "Class._method": private Faust hooks our subclasses override (see the module docstring)
OVERRIDES = {
    "relay.consume._faust.app": ("RelayApp._new_transport",),
    "relay.consume._faust.commits": ("Consumer._new_offset",),
}


def check() -> None:
    """Raise RuntimeError when the installed faust-streaming was not verified with our touchpoints."""
    import faust

    version = getattr(faust, "__version__", "?")
    if not any(version == v or version.startswith(v + ".") for v in VERIFIED):
        raise RuntimeError(f"faust-streaming {version}: relay's consumer was verified with {VERIFIED} only "
                           "(private API in relay.consume._faust); pin faust-streaming<0.16")


def bind_event(event: Any) -> None:
    """Make ``event`` Faust's current event in this task, as stream iteration does.

    Sets ``faust.streams._current_event`` (a context variable holding a weak reference): stream
    iteration sets it only in the agent's task, and our lanes handle events in other tasks, where
    table writes need it to pick the changelog partition."""
    from faust.streams import _current_event

    _current_event.set(weakref.ref(event))


def commit_state(consumer: Any, tp: Any) -> tuple[list[int], Any, Optional[int]]:
    """The commit bookkeeping of ``tp`` that ``Consumer._new_offset`` works on, in this order:
    ``_acked[tp]`` (the acked offsets: the live list, to be updated in place), ``_gap[tp]`` (an
    ``intervaltree.IntervalTree`` of holes, the live tree) and ``_committed_offset[tp]`` (next
    offset to read, or None). Each is a defaultdict, so asking creates an empty entry, as Faust's
    own ``_new_offset`` does. Why: relay.consume._faust.commits replaces Faust's commit rule."""
    return consumer._acked[tp], consumer._gap[tp], consumer._committed_offset[tp]


def forget_acked(consumer: Any, tp: Any, offsets: set[int]) -> None:
    """Drop ``offsets`` from ``_acked_index[tp]``, the set Faust keeps beside ``_acked[tp]`` to
    ignore a second ack of an offset. Why: the replaced commit rule removes offsets from
    ``_acked[tp]`` (committed ones, duplicates) and the index must follow, as Faust's rule does."""
    consumer._acked_index[tp].difference_update(offsets)


def unacked_messages(consumer: Any) -> Optional[MutableSet[Any]]:
    """The consumer's live set of taken, unacked messages (``_unacked_messages``, a WeakSet that
    ``Consumer.wait_empty`` waits for on shutdown and rebalance), or None when the consumer has
    none. Why: relay.consume._faust.waits takes a record out of it while it waits on purpose, so
    that shutdown and rebalances do not wait for that record."""
    return getattr(consumer, "_unacked_messages", None)


def fetch_position(consumer: Any, tp: Any) -> int | None:
    """aiokafka's fetch position of ``tp`` (next offset to fetch, past skipped transaction
    markers), or None when unknown or when the internals differ. Reads
    ``consumer._thread._ensure_consumer()._subscription.subscription.assignment`` without waiting.
    Why: Faust's own ``position()`` may wait for an offset reset, and relay.consume._faust.gauges
    reads it on a timer that must not block."""
    try:
        state = consumer._thread._ensure_consumer()._subscription.subscription.assignment.state_value(tp)
        return state.position if state is not None and state.has_valid_position else None
    except Exception:  # noqa: BLE001 - a gauge falls back to offsets when internals differ
        return None
