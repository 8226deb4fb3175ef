"""Every use of faust-streaming's private API, in one place, checked against the versions it
was verified with (a newer Faust must be re-verified before the pin in pyproject moves).

- ``bind_event``: stream iteration sets ``faust.streams._current_event``; our lanes hand events
  to other tasks, which must set it too (table writes pick the changelog partition from it).
Others that subclass or read private state live next to their reason and import ``check`` from
here: commits.py (``_new_offset``, ``_acked``, ``_gap``), app.py (``_new_transport``),
waits.py / gauges.py (``_unacked_messages``, aiokafka's fetch position).
"""

from __future__ import annotations

import weakref
from typing import Any

VERIFIED = ("0.15",)  # faust-streaming minor versions whose private API these touchpoints match


def check() -> None:
    """Raise RuntimeError when the installed faust-streaming was not verified with our touchpoints."""
    import faust

    version = getattr(faust, "__version__", "?")
    if not any(version == v or version.startswith(v + ".") for v in VERIFIED):
        raise RuntimeError(f"faust-streaming {version}: relay's consumer was verified with {VERIFIED} only "
                           "(private API in relay.consume._faust); pin faust-streaming<0.16")


def bind_event(event: Any) -> None:
    """Make ``event`` Faust's current event in this task, as stream iteration does."""
    from faust.streams import _current_event

    _current_event.set(weakref.ref(event))
