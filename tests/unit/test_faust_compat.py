"""relay.consume._faust.compat: the version gate, the touchpoints resolve against the installed
faust-streaming/aiokafka (no I/O: building an app connects nowhere), and no other module of
relay.consume._faust touches a private faust/mode/aiokafka name.

The scan (:func:`private_uses`) reads each module's source with ``ast`` and reports:
- ``x._name`` (single leading underscore, not a dunder), unless ``x`` is ``self``/``cls`` and the
  enclosing class defines ``_name`` itself (a method, a class attribute, or ``self._name = ...``
  anywhere in the class): those are our own attributes. Limitation: a class assigning a private
  attribute that its Faust base also uses would pass; none does (and compat is where it belongs);
- ``getattr``/``setattr``/``hasattr``/``delattr`` with a private name as a string;
- ``from <not relay> import _name`` and imports of private modules outside relay;
- a private method defined in a class with a base from outside the module (an override of a
  private hook) that compat.OVERRIDES does not list.
compat.OVERRIDES lists the allowed overrides; :data:`NOT_PRIVATE` the names that only look private.
"""

import ast
import importlib
import inspect
from pathlib import Path
from types import SimpleNamespace

import faust
import pytest
from faust.types import TP

import relay.consume._faust as faust_pkg
from relay.config import load_settings
from relay.consume._faust import commits, compat
from relay.consume._faust.app import create_app

PACKAGE = Path(faust_pkg.__file__).parent
BUILTIN_BASES = {"object", "Exception", "BaseException"}
# file -> accesses that look private but are public API (not faust/mode/aiokafka)
NOT_PRIVATE = {
    # confluent-kafka's documented error code: librdkafka's local error codes start with "_"
    "gapfill.py": {"KafkaError._PARTITION_EOF"},
}


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def own_names(cls: ast.ClassDef) -> set[str]:
    """Names a class defines itself: methods and class attributes in its body, and
    ``self.X``/``cls.X`` assignment targets anywhere inside it."""
    names: set[str] = set()
    for stmt in cls.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(stmt.name)
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            names.add(stmt.target.id)
        elif isinstance(stmt, ast.Assign):
            names.update(t.id for t in stmt.targets if isinstance(t, ast.Name))
    for node in ast.walk(cls):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        for target in targets:
            for t in ast.walk(target):
                if (isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
                        and t.value.id in ("self", "cls")):
                    names.add(t.attr)
    return names


class _Scan(ast.NodeVisitor):
    def __init__(self, module_classes: set[str]) -> None:
        self.module_classes = module_classes
        self.classes: list[tuple[ast.ClassDef, set[str], bool]] = []  # (class, own names, foreign base)
        self.uses: list[tuple[int, str]] = []
        self.overrides: list[tuple[int, str]] = []

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        foreign = any(not (isinstance(b, ast.Name) and (b.id in self.module_classes or b.id in BUILTIN_BASES))
                      for b in node.bases)
        self.classes.append((node, own_names(node), foreign))
        self.generic_visit(node)
        self.classes.pop()

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        if self.classes and is_private(node.name):
            cls, _own, foreign = self.classes[-1]
            if foreign and node in cls.body:
                self.overrides.append((node.lineno, f"{cls.name}.{node.name}"))
        self.generic_visit(node)

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if is_private(node.attr):
            ours = (self.classes and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
                    and node.attr in self.classes[-1][1])
            if not ours:
                self.uses.append((node.lineno, ast.unparse(node)))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if (isinstance(node.func, ast.Name) and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str) and is_private(node.args[1].value)):
            self.uses.append((node.lineno, ast.unparse(node)))
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level == 0 and not module.startswith("relay"):
            if any(is_private(part) for part in module.split(".")):
                self.uses.append((node.lineno, f"from {module} import ..."))
            self.uses += [(node.lineno, f"from {module} import {a.name}") for a in node.names if is_private(a.name)]

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not alias.name.startswith("relay") and any(is_private(p) for p in alias.name.split(".")):
                self.uses.append((node.lineno, f"import {alias.name}"))


def private_uses(source: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(private accesses, private-hook overrides) in ``source``; see the module docstring."""
    tree = ast.parse(source)
    scan = _Scan({n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)})
    scan.visit(tree)
    return scan.uses, scan.overrides


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.glob("*.py") if p.name != "compat.py")


# --- the version gate


def test_check_accepts_the_installed_faust():
    compat.check()


@pytest.mark.parametrize("version", ["0.16.0", "0.14.9", "0.150.1", "1.0"])
def test_check_refuses_an_unverified_faust_naming_its_version(monkeypatch, version):
    monkeypatch.setattr(faust, "__version__", version)
    with pytest.raises(RuntimeError, match=f"faust-streaming {version}:"):
        compat.check()


def test_check_accepts_any_patch_of_a_verified_minor(monkeypatch):
    monkeypatch.setattr(faust, "__version__", "0.15.99")
    compat.check()


# --- the touchpoints resolve against the installed versions


@pytest.fixture
def app(tmp_path):
    return create_app(load_settings({}, stack_dir=tmp_path), "compat")


def test_the_transport_override_builds_our_consumer(app):
    assert isinstance(app.consumer, commits.Consumer)


def test_commit_bookkeeping_is_read_and_updated_on_the_live_consumer(app):
    consumer, tp = app.consumer, TP("t", 0)
    acked, gaps, committed = compat.commit_state(consumer, tp)
    assert (acked, len(gaps), committed) == ([], 0, None)
    acked += [5, 6, 7]  # as Faust's ack does: the live list and its index
    compat.commit_state(consumer, tp)[0].append(9)
    assert compat.commit_state(consumer, tp)[0] == [5, 6, 7, 9]
    consumer._acked_index[tp].update({5, 6, 7, 9})
    consumer._committed_offset[tp] = 5
    assert consumer._new_offset(tp) == 8
    assert compat.commit_state(consumer, tp) == ([9], gaps, 5)
    assert consumer._acked_index[tp] == {9}
    compat.forget_acked(consumer, tp, {9})
    assert consumer._acked_index[tp] == set()


def test_unacked_messages_is_the_set_faust_waits_for(app):
    unacked = compat.unacked_messages(app.consumer)
    assert unacked is not None and unacked is compat.unacked_messages(app.consumer)
    assert compat.unacked_messages(object()) is None


def test_fetch_position_reads_aiokafka_state_and_never_raises(app):
    tp = TP("t", 0)
    assert compat.fetch_position(app.consumer, tp) is None  # consumer thread not started
    assert compat.fetch_position(object(), tp) is None

    def consumer(state):
        assignment = SimpleNamespace(state_value=lambda _tp: state)
        aiokafka = SimpleNamespace(_subscription=SimpleNamespace(subscription=SimpleNamespace(assignment=assignment)))
        return SimpleNamespace(_thread=SimpleNamespace(_ensure_consumer=lambda: aiokafka))

    assert compat.fetch_position(consumer(SimpleNamespace(position=42, has_valid_position=True)), tp) == 42
    assert compat.fetch_position(consumer(SimpleNamespace(position=42, has_valid_position=False)), tp) is None
    assert compat.fetch_position(consumer(None), tp) is None


def test_bind_event_sets_faust_current_event():
    from faust.streams import current_event

    class Event:
        pass

    event = Event()
    compat.bind_event(event)
    assert current_event() is event


# --- nothing private outside compat


def test_no_module_but_compat_touches_private_faust_names():
    found = {}
    for path in modules():
        uses, overrides = private_uses(path.read_text())
        allowed = compat.OVERRIDES.get(f"relay.consume._faust.{path.stem}", ())
        bad = [(line, use) for line, use in uses if use not in NOT_PRIVATE.get(path.name, ())]
        bad += [(line, f"override of {name}") for line, name in overrides if name not in allowed]
        if bad:
            found[path.name] = bad
    assert not found, f"private faust/mode/aiokafka API outside compat.py (move it there): {found}"


def test_every_listed_override_exists_here_and_in_the_installed_faust():
    for module_name, names in compat.OVERRIDES.items():
        module = importlib.import_module(module_name)
        _uses, overrides = private_uses(inspect.getsource(module))
        assert set(names) <= {name for _line, name in overrides}, module_name
        for name in names:
            cls_name, method = name.split(".")
            cls = getattr(module, cls_name)
            assert method in vars(cls), name
            base = next((b for b in cls.__mro__[1:] if method in vars(b)), None)
            assert base is not None and not base.__module__.startswith("relay"), \
                f"{name}: the installed Faust no longer has the hook it overrides"


def test_the_scan_finds_what_it_is_meant_to():
    uses, overrides = private_uses('''
from faust.streams import _current_event
import mode._private
from relay.consume._faust import compat

class Ours:
    def __init__(self):
        self._mine = 1
    def _helper(self):
        return self._mine, self._helper()

class Sub(faust.App):
    def _new_transport(self):
        return self._transport, super()._other()

def f(consumer):
    getattr(consumer, "_unacked_messages", None)
    return consumer._thread, getattr(consumer, "__class__"), faust.__version__
''')
    assert [u for _line, u in uses] == [
        "from faust.streams import _current_event", "import mode._private", "self._transport",
        "super()._other", "getattr(consumer, '_unacked_messages', None)", "consumer._thread"]
    assert [o for _line, o in overrides] == ["Sub._new_transport"]
