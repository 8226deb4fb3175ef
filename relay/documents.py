"""User documents (workflows, policies): read as YAML, and every problem found in one list.

Both loaders report all of a document's problems at once, each naming where, the field, the
value and what was expected, so a user fixes a file in one round.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from relay.extras import require


class Problems:
    """Every problem of a definition, each naming where, the field, the value and what was
    expected. ``label``: what ``where`` names ("step": ``step 'charge': ...``; "": as given)."""

    def __init__(self, label: str = "step") -> None:
        self.lines: list[str] = []
        self.label = label

    def add(self, step: str | None, field: str, value: Any, expected: str) -> None:
        shown = repr(value)
        if len(shown) > 100:
            shown = shown[:97] + "..."
        where = "" if not step else f"{self.label} {step!r}: " if self.label else f"{step}: "
        self.lines.append(f"{where}{field or 'step'} = {shown}; expected {expected}")

    def __bool__(self) -> bool:
        return bool(self.lines)


def read_yaml(source: str | Path, *, by: str, error: Callable[[str, list[str]], Exception]) -> Any:
    """The document in YAML text or a YAML file; ``error(name, [problem])`` when it is not YAML."""
    require("saga", by=by)
    import yaml  # the [saga] extra; imported here so that importing relay.saga needs nothing

    text = source.read_text(encoding="utf-8") if isinstance(source, Path) else source
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(str(source)[:60], [f"not YAML: {exc}"]) from None


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines (``#`` comments and blank lines skipped) of settings for a process,
    e.g. the Kafka user it acts as; ValueError naming the line of anything else."""
    env: dict[str, str] = {}
    problems = Problems("")
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip().startswith("RELAY_"):
            problems.add(f"{path}:{n}", "line", raw, "KEY=value with a RELAY_ setting as KEY")
            continue
        env[key.strip()] = value.strip()
    if problems:
        raise ValueError("; ".join(problems.lines))
    return env
