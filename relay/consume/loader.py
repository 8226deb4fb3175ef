"""Find the consumer ``relay worker TARGET`` runs.

TARGET is ``module:attribute`` (a :class:`relay.Consumer`, or a callable taking Settings and
returning one, as FastStream's ``--factory``) or a name registered in the ``relay.consumers``
entry-point group of an installed package (``[project.entry-points."relay.consumers"]``).
Every failure is a ConfigError saying what was tried and what was expected.
"""

from __future__ import annotations

import importlib
import inspect
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from relay.consume.consumer import Consumer
from relay.errors import ConfigError

if TYPE_CHECKING:
    from relay.config import Settings

GROUP = "relay.consumers"


def registered() -> dict[str, str]:
    """Entry-point name -> ``module:attribute`` of every installed consumer."""
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def load_consumer(target: str, settings: "Settings") -> Consumer:
    known = registered()
    spec = known.get(target, target)
    if ":" not in spec:
        names = ", ".join(sorted(known)) or "none installed"
        raise ConfigError([f"consumer {target!r}: not a registered name ({names}) and not module:attribute"])
    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except ImportError as exc:
        raise ConfigError([f"consumer {target!r}: cannot import {module_name!r} ({exc})"]) from None
    except AttributeError:
        raise ConfigError([f"consumer {target!r}: module {module_name!r} has no attribute {attr!r}"]) from None
    if not isinstance(obj, Consumer) and callable(obj) and not inspect.iscoroutinefunction(obj):
        obj = obj(settings)
    if not isinstance(obj, Consumer):
        raise ConfigError([f"consumer {target!r}: {spec} is a {type(obj).__name__}; expected a relay.Consumer "
                           "or a function of Settings returning one"])
    return obj
