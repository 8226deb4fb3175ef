"""Templates (``${input.x}``, ``${steps.<id>.output.y}``, ``${item}``) and condition expressions.

A value that is exactly one template keeps the referenced value's type (a list stays a list);
a template inside a longer string is replaced by the value's text. Conditions are a small,
safe subset of Python expressions (comparisons, ``and``/``or``/``not``, ``in``, literals and
templates): nothing is called, imported or looked up beyond the run's input and step outputs.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping
from typing import Any

TEMPLATE = re.compile(r"\$\{([^}]*)\}")
ROOTS = ("input", "steps", "item")


class TemplateError(ValueError):
    """A reference that cannot be resolved against the run's data."""


def references(value: Any) -> list[str]:
    """Every ``${...}`` reference in a value (strings inside dicts and lists too)."""
    if isinstance(value, str):
        return [m.group(1).strip() for m in TEMPLATE.finditer(value)]
    if isinstance(value, Mapping):
        return [r for v in value.values() for r in references(v)]
    if isinstance(value, (list, tuple)):
        return [r for v in value for r in references(v)]
    return []


def check_reference(ref: str) -> tuple[str, str | None]:
    """(root, step id or None) of a reference, or ValueError saying what is wrong with it."""
    parts = ref.split(".")
    root = parts[0]
    if root not in ROOTS:
        raise ValueError(f"${{{ref}}}: expected to start with one of {', '.join(ROOTS)}")
    if root == "steps":
        if len(parts) < 3 or parts[2] != "output":
            raise ValueError(f"${{{ref}}}: expected steps.<step id>.output[.<field>...]")
        return root, parts[1]
    return root, None


def _lookup(ref: str, data: Mapping[str, Any]) -> Any:
    parts = ref.split(".")
    node: Any = data
    for i, part in enumerate(parts):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise TemplateError(f"${{{ref}}}: {'.'.join(parts[:i + 1])} is not there")
    return node


def render(value: Any, data: Mapping[str, Any]) -> Any:
    """``value`` with every template replaced from ``data`` (keys ``input``, ``steps``, ``item``)."""
    if isinstance(value, str):
        whole = TEMPLATE.fullmatch(value.strip())
        if whole:
            return _lookup(whole.group(1).strip(), data)
        return TEMPLATE.sub(lambda m: _text(_lookup(m.group(1).strip(), data)), value)
    if isinstance(value, Mapping):
        return {k: render(v, data) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [render(v, data) for v in value]
    return value


def _text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


_ALLOWED = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.Compare, ast.Eq, ast.NotEq,
            ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.Constant, ast.Name, ast.Load, ast.List,
            ast.Tuple)


def compile_condition(expression: str) -> ast.Expression:
    """Parse a condition, templates replaced by placeholder names; ValueError names what is refused."""
    source = TEMPLATE.sub(lambda m: f"__ref{m.start()}__", expression)
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"{expression!r} is not an expression: {exc.msg}") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise ValueError(f"{expression!r}: {type(node).__name__} is not allowed; expected comparisons, "
                             "and/or/not, in, literals and ${...} references")
        if isinstance(node, ast.Name) and not (node.id.startswith("__ref") or node.id in ("true", "false", "null")):
            raise ValueError(f"{expression!r}: bare name {node.id!r}; expected a literal or a ${{...}} reference")
    return tree


def evaluate(expression: str, data: Mapping[str, Any]) -> bool:
    """The truth of a condition over the run's data."""
    names = {f"__ref{m.start()}__": _lookup(m.group(1).strip(), data) for m in TEMPLATE.finditer(expression)}
    names.update(true=True, false=False, null=None)
    return bool(_eval(compile_condition(expression).body, names))


def _eval(node: ast.AST, names: Mapping[str, Any]) -> Any:  # noqa: PLR0911 - one branch per node type
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return names[node.id]
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_eval(e, names) for e in node.elts]
    if isinstance(node, ast.UnaryOp):
        return not _eval(node.operand, names)
    if isinstance(node, ast.BoolOp):
        values = (_eval(v, names) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, names)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _eval(right_node, names)
            if not _compare(op, left, right):
                return False
            left = right
        return True
    raise ValueError(f"{type(node).__name__} is not allowed")


_OPS: dict[type[ast.cmpop], Any] = {
    ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b, ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}


def _compare(op: ast.cmpop, left: Any, right: Any) -> bool:
    try:
        return bool(_OPS[type(op)](left, right))
    except TypeError as exc:
        raise TemplateError(f"cannot compare {left!r} and {right!r}: {exc}") from None
