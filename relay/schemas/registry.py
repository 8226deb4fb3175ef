"""The schema registry: declared Avro schemas per event type, read from the repository.

Layout (see ``schemas/README.md``): ``<root>/<aggregatetype>/<EventType>/v<N>.avsc``.

Contract:
- :meth:`SchemaRegistry.load` reads and checks every file at once and raises
  :class:`relay.errors.ConfigError` listing *every* bad file (name not ``v<N>.avsc``, versions not
  consecutive from v1, not JSON, not valid Avro, top level not a record, record name different
  from its event-type folder, duplicate field names, defaults that do not fit their field - for a
  union, its first branch, as the Avro spec requires). A missing root is an empty registry.
  Files directly under the root (README.md) and hidden entries are ignored.
- an event type without a declared schema stays schemaless: :meth:`SchemaRegistry.validate`
  returns ``None`` for it. Otherwise the payload (a JSON-like Python value: dict, list, str, int,
  float, bool, None; bytes/fixed also as str of code points 0-255, as in Avro's JSON encoding;
  union values given plainly, not wrapped) is validated against the *latest* version, which is
  returned. A mismatch raises :class:`relay.errors.InvalidEvent` naming the deepest offending
  field (``payload.items[2].sku``), its value (:data:`MISSING` for an absent required field) and
  what the schema wanted. Unknown fields in a record are errors. Logical types are checked as
  their base type (``timestamp-millis`` as a 64-bit int).
- :meth:`SchemaRegistry.check` checks every consecutive version pair of every event type with
  :func:`relay.schemas.compat.check_compatibility`.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from relay.errors import ConfigError, InvalidEvent
from relay.headers import AGGREGATE_TYPE_RE
from relay.schemas.compat import MODES, check_compatibility, describe, named_types, node, short

VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.avsc$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INT_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_FLOAT_MAX = 3.4028234663852886e38


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()  # InvalidEvent.value of a required field that is absent


@dataclass(frozen=True)
class SchemaVersion:
    """One declared version: ``schema`` is fastavro-parsed, ``raw`` the file's JSON."""

    aggregatetype: str
    type: str
    version: int
    schema: Any = field(repr=False)
    raw: dict = field(repr=False)
    fingerprint: str  # hex CRC-64-AVRO of the parsing canonical form
    path: Path
    names: Mapping[str, dict] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ref(self) -> str:
        """``order/OrderPlaced/v2``: what the ``payload-schema`` header and column carry."""
        return f"{self.aggregatetype}/{self.type}/v{self.version}"

    def validate(self, payload: Any) -> None:
        """Raise InvalidEvent naming the deepest offending field when ``payload`` does not fit."""
        err = _Validator(self.names).check(self.schema, payload, "payload", 0)
        if err is not None:
            raise InvalidEvent(err.path, err.value, err.expected)


class SchemaRegistry:
    """Every declared version of every event type under one root; immutable once loaded."""

    def __init__(self, root: Path, versions: Mapping[tuple[str, str], list[SchemaVersion]],
                 formats: Mapping[str, str] | None = None) -> None:
        self.root = root
        self._versions = {key: sorted(vs, key=lambda v: v.version) for key, vs in versions.items()}
        self._formats = dict(formats or {})
        self._by_fingerprint = {v.fingerprint: v for vs in self._versions.values() for v in vs}

    def format(self, aggregatetype: str) -> str:
        """``avro`` when ``<aggregatetype>/format`` says so (binary Avro on the wire), else ``json``."""
        return self._formats.get(aggregatetype, "json")

    def by_fingerprint(self, fingerprint: str) -> SchemaVersion | None:
        return self._by_fingerprint.get(fingerprint)

    @classmethod
    def load(cls, root: Path | str) -> "SchemaRegistry":
        root = Path(root)
        if not root.exists():
            return cls(root, {})
        if not root.is_dir():
            raise ConfigError([f"{root}: the schema root must be a folder"])
        problems: list[str] = []
        found: dict[tuple[str, str], list[SchemaVersion]] = {}
        formats: dict[str, str] = {}
        for agg_dir in _entries(root):
            if agg_dir.is_file():
                continue  # README.md and friends
            if not AGGREGATE_TYPE_RE.match(agg_dir.name):
                problems.append(f"{_shown(root, agg_dir)}: aggregate type folder must be 1-200 characters "
                                "of [A-Za-z0-9._-] (it names a Kafka topic)")
                continue
            for type_dir in _entries(agg_dir):
                if type_dir.name == FORMAT_FILE and type_dir.is_file():
                    declared = type_dir.read_text(encoding="utf-8").strip()
                    if declared not in FORMATS:
                        problems.append(f"{_shown(root, type_dir)}: payload format {declared!r}; expected one of "
                                        f"{', '.join(FORMATS)}")
                    else:
                        formats[agg_dir.name] = declared
                    continue
                if not type_dir.is_dir():
                    problems.append(f"{_shown(root, type_dir)}: expected only event-type folders here "
                                    "(<aggregatetype>/<EventType>/v<N>.avsc)")
                    continue
                found[(agg_dir.name, type_dir.name)] = _load_type(root, agg_dir.name, type_dir, problems)
        problems += [f"{_shown(root, root / agg)}/{FORMAT_FILE}: format avro needs a schema for every event "
                     "type, and none is declared" for agg, f in formats.items()
                     if f == "avro" and not any(a == agg for a, _ in found)]
        if problems:
            raise ConfigError(problems)
        return cls(root, found, formats)

    @classmethod
    def default(cls) -> "SchemaRegistry":
        """The project's own ``schemas/`` folder, loaded once per process."""
        return _default_registry()

    def event_types(self) -> list[tuple[str, str]]:
        return sorted(self._versions)

    def versions(self, aggregatetype: str, type: str) -> list[SchemaVersion]:
        return list(self._versions.get((aggregatetype, type), ()))

    def latest(self, aggregatetype: str, type: str) -> SchemaVersion | None:
        versions = self._versions.get((aggregatetype, type))
        return versions[-1] if versions else None

    def by_ref(self, ref: str) -> SchemaVersion | None:
        """The version a ``payload-schema`` header names (``order/OrderPlaced/v2``), if declared."""
        aggregatetype, _, rest = ref.partition("/")
        type, _, version = rest.partition("/")
        return next((v for v in self._versions.get((aggregatetype, type), ()) if f"v{v.version}" == version), None)

    def validate(self, aggregatetype: str, type: str, payload: Any) -> SchemaVersion | None:
        """None when no schema is declared; else the latest version, after validating ``payload``."""
        version = self.latest(aggregatetype, type)
        if version is not None:
            version.validate(payload)
        return version

    def check(self, mode: str = "backward") -> list[str]:
        """Compatibility problems between consecutive versions of every event type."""
        if mode not in MODES:
            raise ValueError(f"compatibility mode must be one of {', '.join(MODES)}, got {mode!r}")
        problems = []
        for (aggregatetype, type), versions in sorted(self._versions.items()):
            for old, new in pairwise(versions):
                for p in check_compatibility(old.raw, new.raw, mode, old=f"v{old.version}", new=f"v{new.version}"):
                    problems.append(f"{aggregatetype}/{type} v{old.version} -> v{new.version}: {p}")
        return problems


FORMAT_FILE = "format"  # <aggregatetype>/format: "avro" or "json" (the default)
FORMATS = ("json", "avro")


@functools.lru_cache(maxsize=1)
def _default_registry() -> SchemaRegistry:
    from relay.config import project_root

    return SchemaRegistry.load(project_root() / "schemas")


# --- loading -----------------------------------------------------------------------------------
def _entries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _shown(root: Path, path: Path) -> str:
    return str(path.relative_to(root.parent)) if path.is_relative_to(root.parent) else str(path)


def _load_type(root: Path, aggregatetype: str, folder: Path, problems: list[str]) -> list[SchemaVersion]:
    versions, numbers = [], []
    for path in _entries(folder):
        m = VERSION_FILE.match(path.name)
        if m is None or not path.is_file():
            problems.append(f"{_shown(root, path)}: schema files must be named v<N>.avsc (N = 1, 2, 3, ...)")
            continue
        numbers.append(int(m[1]))
        errors_before = len(problems)
        version = _load_version(root, aggregatetype, folder.name, int(m[1]), path, problems)
        if version is not None and len(problems) == errors_before:
            versions.append(version)
    if not numbers:
        problems.append(f"{_shown(root, folder)}: no schema versions (add v1.avsc or remove the folder)")
    elif sorted(numbers) != list(range(1, len(numbers) + 1)):
        gaps = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
        problems.append(f"{_shown(root, folder)}: versions must be consecutive from v1; missing "
                        + ", ".join(f"v{n}.avsc" for n in gaps))
    return versions


def _load_version(root: Path, aggregatetype: str, event_type: str, number: int, path: Path,
                  problems: list[str]) -> SchemaVersion | None:
    shown = _shown(root, path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{shown}: not readable JSON ({exc})")
        return None
    try:
        parsed = parse_schema(raw)
    except Exception as exc:  # fastavro raises several kinds (SchemaParseException, UnknownType, ...)
        problems.append(f"{shown}: not a valid Avro schema ({type(exc).__name__}: {exc})")
        return None
    names = named_types(parsed)
    kind, top = node(parsed, names)
    if kind != "record":
        problems.append(f"{shown}: the top-level schema must be a record named {event_type!r}, "
                        f"not {describe(parsed, names)}")
        return None
    if short(top["name"]) != event_type:
        problems.append(f"{shown}: record name {short(top['name'])!r} must match its event-type folder "
                        f"{event_type!r}")
    problems.extend(f"{shown}: {p}" for p in _lint(names))
    return SchemaVersion(aggregatetype=aggregatetype, type=event_type, version=number, schema=parsed, raw=raw,
                         fingerprint=fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"),
                         path=path, names=names)


def _lint(names: dict[str, dict]) -> list[str]:
    """What fastavro accepts but other Avro implementations (and this registry) reject."""
    problems, validator = [], _Validator(names)
    for full, definition in names.items():
        if node(definition, names)[0] != "record":
            continue
        seen: set[str] = set()
        for f in definition["fields"]:
            where = f"{short(full)}.{f['name']}"
            if f["name"] in seen:
                problems.append(f"{where}: duplicate field name")
            seen.add(f["name"])
            if "default" not in f:
                continue
            kind, n = node(f["type"], names)
            target = n[0] if kind == "union" else f["type"]  # a union's default belongs to its first branch
            if validator.check(target, f["default"], "default", 0) is not None:
                problems.append(f"{where}: default {f['default']!r} does not fit {describe(target, names)}"
                                + (" (a union's default must fit its first branch)" if kind == "union" else ""))
    return problems


# --- payload validation --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Mismatch:
    path: str
    value: Any
    expected: str
    depth: int


def _join(path: str, key: Any) -> str:
    if isinstance(key, str) and _IDENTIFIER.match(key):
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key, default=repr)}]"


def _fits_shape(kind: str, value: Any) -> bool:
    """Could ``value`` be of this kind at all (ignoring ranges, symbols, sizes and contents)?"""
    if isinstance(value, bool):
        return kind == "boolean"
    if kind in ("int", "long"):
        return isinstance(value, int)
    if kind in ("float", "double"):
        return isinstance(value, (int, float))
    if kind in ("bytes", "fixed"):
        return isinstance(value, (bytes, bytearray, str))
    return {"null": value is None, "string": isinstance(value, str), "enum": isinstance(value, str),
            "array": isinstance(value, (list, tuple)), "map": isinstance(value, Mapping),
            "record": isinstance(value, Mapping)}.get(kind, False)


def _octets(value: Any) -> int | None:
    """Length in bytes of a bytes value (bytes, or a str of code points 0-255), else None."""
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, str) and all(ord(c) < 256 for c in value):
        return len(value)
    return None


class _Validator:
    """Walks a fastavro-parsed schema alongside a value; returns the deepest mismatch or None."""

    def __init__(self, names: Mapping[str, dict]) -> None:
        self.names = names

    def check(self, schema: Any, value: Any, path: str, depth: int) -> _Mismatch | None:
        kind, n = node(schema, self.names)
        if kind == "union":
            return self.union(n, value, path, depth)
        want = functools.partial(describe, schema, self.names)  # rendered only when something fails
        if not _fits_shape(kind, value):
            if kind == "record":
                return _Mismatch(path, value, f"a record {want()} (an object)", depth)
            return _Mismatch(path, value, f"{want()} (an object)" if kind == "map" else want(), depth)
        if kind in _INT_RANGE:
            low, high = _INT_RANGE[kind]
            if not low <= value <= high:
                bits = 32 if kind == "int" else 64
                return _Mismatch(path, value, f"{want()} ({bits}-bit: {low}..{high})", depth)
        elif kind == "float" and isinstance(value, float) and math.isfinite(value) and abs(value) > _FLOAT_MAX:
            return _Mismatch(path, value, f"{want()} (32-bit: |x| <= {_FLOAT_MAX:.7g})", depth)
        elif kind == "bytes" and _octets(value) is None:
            return _Mismatch(path, value, "bytes (or a string of code points 0-255)", depth)
        elif kind == "fixed" and _octets(value) != n["size"]:
            return _Mismatch(path, value, f"fixed {want()} of exactly {n['size']} bytes", depth)
        elif kind == "enum" and value not in n["symbols"]:
            return _Mismatch(path, value, f"one of the symbols [{', '.join(n['symbols'])}] of enum {want()}", depth)
        elif kind == "array":
            for i, item in enumerate(value):
                if (err := self.check(n["items"], item, f"{path}[{i}]", depth + 1)) is not None:
                    return err
        elif kind == "map":
            for key, item in value.items():
                if not isinstance(key, str):
                    return _Mismatch(f"{path}[{key!r}]", key, "a string map key", depth + 1)
                if (err := self.check(n["values"], item, _join(path, key), depth + 1)) is not None:
                    return err
        elif kind == "record":
            return self.record(n, value, path, depth)
        return None

    def record(self, n: dict, value: Mapping, path: str, depth: int) -> _Mismatch | None:
        declared = [f["name"] for f in n["fields"]]
        known = set(declared)
        for key in value:
            if key not in known:
                hint = difflib.get_close_matches(str(key), declared, n=1)
                return _Mismatch(_join(path, key), value[key],
                                 f"no field {key!r} (record {short(n['name'])} declares: "
                                 f"{', '.join(declared) or 'nothing'}"
                                 + (f"; did you mean {hint[0]!r}?)" if hint else ")"), depth + 1)
        for f in n["fields"]:
            where = _join(path, f["name"])
            if f["name"] in value:
                if (err := self.check(f["type"], value[f["name"]], where, depth + 1)) is not None:
                    return err
            elif "default" not in f:
                want = f"a record with field {f['name']!r} ({describe(f['type'], self.names)}; required: no default)"
                return _Mismatch(where, MISSING, want, depth + 1)
        return None

    def union(self, branches: list, value: Any, path: str, depth: int) -> _Mismatch | None:
        errors = []
        for b in branches:
            err = self.check(b, value, path, depth)
            if err is None:
                return None
            errors.append((b, err))
        plausible = [err for b, err in errors if _fits_shape(node(b, self.names)[0], value)]
        deepest = max(plausible, key=lambda e: e.depth, default=None)
        if len(plausible) == 1 or (deepest is not None and deepest.depth > depth):
            return deepest
        return _Mismatch(path, value, "one of [" + ", ".join(describe(b, self.names) for b in branches) + "]", depth)
