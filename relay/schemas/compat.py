"""Schema compatibility: Avro schema resolution checked statically, before any data is written.

Contract of :func:`check_compatibility` (``writer_old``, ``reader_new``, ``mode``):

- ``backward``: data written with the old schema must be readable by a reader holding the new one
  (new = reader). ``forward``: a reader still on the old schema must read data written with the
  new one (old = reader). ``full``: both.
- the result is a list of problems, empty when compatible. Every problem names the field path
  (``OrderPlaced.items[].sku``: ``[]`` = array items, ``{}`` = map values, rooted at the new
  schema's record name) and the rule that is broken, and ends with who cannot read what, e.g.
  ``OrderPlaced.coupon: field added without a default (a v2 reader cannot read v1 data)``.
- the rules are those of the Avro specification's "Schema Resolution":
  records (reader fields absent from the writer need a default; writer-only fields are skipped;
  names match unqualified or through the reader's aliases, fields too), promotions (int -> long,
  float, double; long -> float, double; float -> double; string <-> bytes), enums (a writer symbol
  the reader lacks needs the reader enum's default), unions (every writer branch must resolve to
  some reader branch; a non-union writer must match a branch of a union reader; a union writer
  against a non-union reader must match it in every branch), arrays and maps (items / values
  recursively), fixed (name and size). Logical types resolve by their base type, except that two
  different logical types, or decimals of different precision/scale, are reported (the bytes
  would be read, but mean something else).
- a check never raises for incompatible schemas; it raises ``ValueError`` for an unknown mode and
  fastavro's parse errors for schemas that are not valid Avro.

The small helpers for walking fastavro-parsed schemas (:func:`named_types`, :func:`node`,
:func:`describe`) are shared with the write-time validator in :mod:`relay.schemas.registry`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastavro.schema import parse_schema

MODES = ("backward", "forward", "full")
PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED = frozenset({"record", "error", "enum", "fixed"})
_COMPLEX = NAMED | {"array", "map"}
PROMOTIONS = {"int": {"long", "float", "double"}, "long": {"float", "double"}, "float": {"double"},
              "string": {"bytes"}, "bytes": {"string"}}


def named_types(schema: Any) -> dict[str, dict]:
    """Full name -> definition of every named type in a fastavro-parsed schema (first definition)."""
    names: dict[str, dict] = {}

    def walk(s: Any) -> None:
        if isinstance(s, list):
            for branch in s:
                walk(branch)
            return
        if not isinstance(s, dict):
            return
        t = s.get("type")
        if t in NAMED and isinstance(s.get("name"), str):
            if s["name"] in names:
                return
            names[s["name"]] = s
        if t in ("record", "error"):
            for f in s.get("fields", []):
                walk(f.get("type"))
        elif t == "array":
            walk(s.get("items"))
        elif t == "map":
            walk(s.get("values"))
        elif isinstance(t, (dict, list)):
            walk(t)

    walk(schema)
    return names


def node(schema: Any, names: Mapping[str, dict]) -> tuple[str, Any]:
    """(kind, definition) of a schema position, following named references; "error" counts as record."""
    while True:
        if isinstance(schema, list):
            return "union", schema
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return schema, {"type": schema}
            schema = names[schema]
            continue
        t = schema["type"]
        if isinstance(t, str) and (t in PRIMITIVES or t in _COMPLEX):
            return ("record" if t == "error" else t), schema
        schema = names[t] if isinstance(t, str) else t


def short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def describe(schema: Any, names: Mapping[str, dict]) -> str:
    """Human name of a type: ``long``, ``long (timestamp-millis)``, ``Address``, ``array<string>``."""
    kind, n = node(schema, names)
    if kind == "union":
        return "union [" + ", ".join(describe(b, names) for b in n) + "]"
    if kind in NAMED:
        text = short(n["name"])
    elif kind == "array":
        text = f"array<{describe(n['items'], names)}>"
    elif kind == "map":
        text = f"map<{describe(n['values'], names)}>"
    else:
        text = kind
    logical = n.get("logicalType") if isinstance(n, dict) else None
    return f"{text} ({logical})" if logical else text


def _parsed(schema: Any) -> tuple[Any, dict[str, dict]]:
    parsed = parse_schema(schema)
    return parsed, named_types(parsed)


def check_compatibility(writer_old: Any, reader_new: Any, mode: str = "backward", *,
                        old: str = "old", new: str = "new") -> list[str]:
    """Problems that stop ``mode`` compatibility between two schema versions (empty: compatible).

    ``old`` / ``new`` label the versions in the messages (the registry passes ``v1`` / ``v2``).
    """
    if mode not in MODES:
        raise ValueError(f"compatibility mode must be one of {', '.join(MODES)}, got {mode!r}")
    old_s, new_s = _parsed(writer_old), _parsed(reader_new)
    root = "<root>"
    kind, top = node(new_s[0], new_s[1])
    if kind in NAMED:
        root = short(top["name"])
    problems: list[str] = []
    if mode in ("backward", "full"):
        problems += _Resolution(old_s, new_s, reader_is_new=True, old=old, new=new).run(root)
    if mode in ("forward", "full"):
        problems += _Resolution(new_s, old_s, reader_is_new=False, old=old, new=new).run(root)
    return list(dict.fromkeys(problems))


class _Resolution:
    """One direction: can ``reader`` read what ``writer`` wrote? Collects problems, never raises."""

    def __init__(self, writer: tuple, reader: tuple, *, reader_is_new: bool, old: str, new: str) -> None:
        (self.w_schema, self.wn), (self.r_schema, self.rn) = writer, reader
        self.reader_is_new = reader_is_new
        self.r_label, self.w_label = (new, old) if reader_is_new else (old, new)
        self.problems: list[str] = []
        self.seen: set[tuple[str, str]] = set()

    def run(self, root: str) -> list[str]:
        self.resolve(self.w_schema, self.r_schema, root)
        return self.problems

    # --- reporting ---------------------------------------------------------------------------
    def fail(self, path: str, rule: str) -> None:
        self.problems.append(f"{path}: {rule} (a {self.r_label} reader cannot read {self.w_label} data)")

    def changed(self, w: Any, r: Any) -> str:
        wd, rd = describe(w, self.wn), describe(r, self.rn)
        before, after = (wd, rd) if self.reader_is_new else (rd, wd)
        return f"type changed from {before} to {after}"

    def verb(self) -> str:
        """What happened to something the writer has and the reader lacks, in old -> new terms."""
        return "removed" if self.reader_is_new else "added"

    # --- matching ----------------------------------------------------------------------------
    def _same_name(self, w: dict, r: dict) -> bool:
        wanted = short(w["name"])
        return short(r["name"]) == wanted or wanted in {short(a) for a in r.get("aliases", ())}

    def matches(self, w: Any, r: Any, *, promote: bool = True) -> bool:
        """Does non-union reader schema ``r`` match non-union writer schema ``w`` (names, kinds)?"""
        wk, wd = node(w, self.wn)
        rk, rd = node(r, self.rn)
        if wk == rk:
            return self._same_name(wd, rd) if wk in NAMED else True
        return promote and rk in PROMOTIONS.get(wk, ())

    def branch_for(self, w: Any, union: list) -> Any | None:
        """The reader union branch that reads writer type ``w``: exact kind/name first, then promotions."""
        for promote in (False, True):
            for b in union:
                if node(b, self.rn)[0] != "union" and self.matches(w, b, promote=promote):
                    return b
        return None

    # --- resolution --------------------------------------------------------------------------
    def resolve(self, w: Any, r: Any, path: str) -> None:
        wk, wd = node(w, self.wn)
        rk, rd = node(r, self.rn)
        if wk == "union":
            for b in wd:
                target = self.branch_for(b, rd) if rk == "union" else (r if self.matches(b, r) else None)
                if target is not None:
                    self.resolve(b, target, path)
                elif rk == "union":
                    self.fail(path, f"union branch {describe(b, self.wn)} {self.verb()}: no branch of "
                                    f"{describe(r, self.rn)} can read it")
                else:
                    self.fail(path, f"{self.changed(w, r)}: the branch {describe(b, self.wn)} cannot be "
                                    f"read as {describe(r, self.rn)}")
            return
        if rk == "union":
            target = self.branch_for(w, rd)
            if target is None:
                self.fail(path, f"{self.changed(w, r)}: no branch can read {describe(w, self.wn)}")
            else:
                self.resolve(w, target, path)
            return
        if not self.matches(w, r):
            if wk == rk:  # named types of the same kind, different names
                before, after = (wd["name"], rd["name"]) if self.reader_is_new else (rd["name"], wd["name"])
                hint = f" (list {short(before)!r} in its aliases)" if self.reader_is_new else ""
                self.fail(path, f"{wk} renamed from {short(before)} to {short(after)} without an alias{hint}")
            else:
                self.fail(path, f"{self.changed(w, r)}, which is not an Avro promotion")
            return
        if wk in NAMED:
            key = (wd["name"], rd["name"])
            if key in self.seen:  # recursive types, or one type used in several places: once is enough
                return
            self.seen.add(key)
        if wk == rk == "record":
            self.record(wd, rd, path)
        elif wk == rk == "enum":
            self.enum(wd, rd, path)
        elif wk == rk == "fixed" and wd["size"] != rd["size"]:
            before, after = (wd["size"], rd["size"]) if self.reader_is_new else (rd["size"], wd["size"])
            self.fail(path, f"fixed {short(rd['name'])} size changed from {before} to {after} bytes")
        elif wk == rk == "array":
            self.resolve(wd["items"], rd["items"], path + "[]")
        elif wk == rk == "map":
            self.resolve(wd["values"], rd["values"], path + "{}")
        self.logical(wd, rd, path)

    def record(self, w: dict, r: dict, path: str) -> None:
        by_name = {f["name"]: f for f in w["fields"]}
        for f in r["fields"]:
            source = by_name.get(f["name"]) or next(
                (by_name[a] for a in f.get("aliases", ()) if a in by_name), None)
            where = f"{path}.{f['name']}"
            if source is not None:
                self.resolve(source["type"], f["type"], where)
            elif "default" not in f:
                self.fail(where, "field added without a default" if self.reader_is_new
                          else f"field removed, but the {self.r_label} schema declares it without a default")

    def enum(self, w: dict, r: dict, path: str) -> None:
        symbols = set(r["symbols"])
        if r.get("default") in symbols:
            return  # unknown writer symbols read as the reader's default
        for s in w["symbols"]:
            if s not in symbols:
                self.fail(path, f"enum symbol {s!r} {self.verb()}, and enum {short(r['name'])} of "
                                f"{self.r_label} has no default symbol")

    def logical(self, w: dict, r: dict, path: str) -> None:
        wl, rl = w.get("logicalType"), r.get("logicalType")
        if wl and rl and wl != rl:
            before, after = (wl, rl) if self.reader_is_new else (rl, wl)
            self.fail(path, f"logical type changed from {before} to {after} (values would be reinterpreted)")
        elif wl == rl == "decimal":
            wps, rps = (w.get("precision"), w.get("scale", 0)), (r.get("precision"), r.get("scale", 0))
            if wps != rps:
                before, after = (wps, rps) if self.reader_is_new else (rps, wps)
                self.fail(path, f"decimal (precision, scale) changed from {before} to {after}")
