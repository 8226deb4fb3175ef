"""Declared Avro schemas: loading rules, write-time payload validation, static compatibility checks.

Pure: reads the repository's schemas/ and files under tmp_path only. The compatibility checker is
cross-checked against fastavro's own schema resolution (write with the old schema, read with the
new one).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from typer.testing import CliRunner

from relay.cli.schemas import app
from relay.errors import ConfigError, InvalidEvent
from relay.schemas import MISSING, SchemaRegistry, SchemaVersion, check_compatibility

ROOT = Path(__file__).resolve().parents[2]
REPO_SCHEMAS = ROOT / "schemas"
PLACED = {"run_id": "r-1", "order_id": "o-1", "seq": 1, "amount_cents": 1999}
CONFIRMED = {"run_id": "r-1", "order_id": "o-1", "seq": 2, "status": "confirmed"}


def record(name: str, *fields: dict, **extra) -> dict:
    return {"type": "record", "name": name, "fields": list(fields), **extra}


def f(name: str, type_, **extra) -> dict:
    return {"name": name, "type": type_, **extra}


def write_schema(root: Path, ref: str, schema: dict | str) -> Path:
    path = root / f"{ref}.avsc"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(schema if isinstance(schema, str) else json.dumps(schema))
    return path


def registry_with(tmp_path: Path, schema: dict, aggregatetype: str = "shop") -> SchemaRegistry:
    write_schema(tmp_path, f"{aggregatetype}/{schema['name'].rsplit('.', 1)[-1]}/v1", schema)
    return SchemaRegistry.load(tmp_path)


# --- the repository's own schemas ---------------------------------------------------------------
def test_repo_schemas_load_and_are_compatible_in_every_mode():
    reg = SchemaRegistry.load(REPO_SCHEMAS)
    assert reg.event_types() == [("order", "OrderConfirmed"), ("order", "OrderPlaced")]
    assert [v.version for v in reg.versions("order", "OrderPlaced")] == [1, 2]
    latest = reg.latest("order", "OrderPlaced")
    assert isinstance(latest, SchemaVersion) and latest.ref == "order/OrderPlaced/v2"
    assert latest.path == REPO_SCHEMAS / "order" / "OrderPlaced" / "v2.avsc"
    assert len(latest.fingerprint) == 16 and int(latest.fingerprint, 16) >= 0
    assert latest.raw["name"] == "OrderPlaced" and reg.by_ref("order/OrderPlaced/v1").version == 1
    for mode in ("backward", "forward", "full"):
        assert reg.check(mode) == []


def test_repo_schemas_fit_the_demo_payloads():
    reg = SchemaRegistry.load(REPO_SCHEMAS)
    assert reg.validate("order", "OrderPlaced", PLACED).ref == "order/OrderPlaced/v2"
    assert reg.validate("order", "OrderPlaced", {**PLACED, "coupon": "SPRING"}).version == 2
    assert reg.validate("order", "OrderConfirmed", CONFIRMED).ref == "order/OrderConfirmed/v1"
    for version in reg.versions("order", "OrderPlaced"):
        version.validate(PLACED)


def test_schemaless_event_types_and_missing_root(tmp_path):
    reg = SchemaRegistry.load(REPO_SCHEMAS)
    assert reg.validate("order", "OrderShipped", {"anything": [1, "goes"]}) is None
    assert reg.validate("payment", "OrderPlaced", 42) is None
    empty = SchemaRegistry.load(tmp_path / "nope")
    assert empty.event_types() == [] and empty.latest("order", "OrderPlaced") is None
    assert empty.versions("order", "OrderPlaced") == [] and empty.check() == []


def test_default_is_the_project_registry_loaded_once():
    assert SchemaRegistry.default() is SchemaRegistry.default()
    assert SchemaRegistry.default().latest("order", "OrderPlaced").ref == "order/OrderPlaced/v2"


# --- payload validation --------------------------------------------------------------------------
def rejected(reg_or_version, payload, aggregatetype="order", type_="OrderPlaced") -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        if isinstance(reg_or_version, SchemaRegistry):
            reg_or_version.validate(aggregatetype, type_, payload)
        else:
            reg_or_version.validate(payload)
    return info.value


@pytest.fixture(scope="module")
def repo() -> SchemaRegistry:
    return SchemaRegistry.load(REPO_SCHEMAS)


def test_wrong_type_names_field_value_and_expectation(repo):
    err = rejected(repo, {**PLACED, "amount_cents": "19.99"})
    assert (err.field, err.value, err.expected) == ("payload.amount_cents", "19.99", "long")
    assert "payload.amount_cents" in str(err) and isinstance(err, ValueError)
    err = rejected(repo, {**PLACED, "run_id": None})
    assert (err.field, err.value, err.expected) == ("payload.run_id", None, "string")


def test_int_is_32_bit_and_long_64_bit(repo):
    repo.validate("order", "OrderPlaced", {**PLACED, "seq": 2**31 - 1, "amount_cents": 2**63 - 1})
    repo.validate("order", "OrderPlaced", {**PLACED, "seq": -(2**31), "amount_cents": -(2**63)})
    err = rejected(repo, {**PLACED, "seq": 2**31})
    assert (err.field, err.value) == ("payload.seq", 2**31)
    assert err.expected.startswith("int") and "32-bit" in err.expected
    err = rejected(repo, {**PLACED, "amount_cents": 2**63})
    assert err.field == "payload.amount_cents" and "64-bit" in err.expected
    err = rejected(repo, {**PLACED, "seq": True})  # bool is an int subclass in Python, not in Avro
    assert (err.field, err.value, err.expected) == ("payload.seq", True, "int")
    assert rejected(repo, {**PLACED, "seq": 1.0}).field == "payload.seq"


def test_unknown_and_missing_fields(repo):
    err = rejected(repo, {**PLACED, "amount_cent": 5})
    assert (err.field, err.value) == ("payload.amount_cent", 5)
    assert "no field 'amount_cent'" in err.expected and "did you mean 'amount_cents'" in err.expected
    payload = dict(PLACED)
    del payload["order_id"]
    err = rejected(repo, payload)
    assert (err.field, err.value) == ("payload.order_id", MISSING)
    assert err.expected.startswith("a record with field 'order_id'") and "<missing>" in str(err)
    err = rejected(repo, None)
    assert (err.field, err.value) == ("payload", None) and "record OrderPlaced" in err.expected
    assert rejected(repo, [PLACED]).field == "payload"


def test_union_mismatch(repo):
    err = rejected(repo, {**PLACED, "coupon": 10})
    assert (err.field, err.value, err.expected) == ("payload.coupon", 10, "one of [null, string]")
    repo.validate("order", "OrderPlaced", {**PLACED, "coupon": None})


NESTED = record(
    "Order",
    f("id", {"type": "string", "logicalType": "uuid"}),
    f("items", {"type": "array", "items": record(
        "Item", f("sku", "string"), f("qty", "int"),
        f("price", {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}))}),
    f("ship_to", ["null", record("Address", f("street", "string"), f("zip", "string"))], default=None),
    f("bill_to", ["null", "Address"], default=None),  # a named-type reference
    f("attrs", {"type": "map", "values": "long"}, default={}),
    f("state", {"type": "enum", "name": "State", "symbols": ["NEW", "PAID"]}, default="NEW"),
    f("hash", {"type": "fixed", "name": "Hash", "size": 4}, default="\u0000\u0000\u0000\u0000"),
    f("at", {"type": "long", "logicalType": "timestamp-millis"}, default=0),
    f("ratio", "float", default=0.5),
    f("weight", "double", default=0.0),
    f("flag", "boolean", default=False),
    f("parent", ["null", "Order"], default=None),  # recursive
    namespace="shop.events",
)
ITEM = {"sku": "A-1", "qty": 2, "price": "\u0001\u00f3"}
ORDER = {"id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "items": [ITEM, ITEM, ITEM]}


@pytest.fixture(scope="module")
def nested(tmp_path_factory) -> SchemaVersion:
    reg = registry_with(tmp_path_factory.mktemp("nested"), NESTED)
    return reg.latest("shop", "Order")


def test_nested_happy_path(nested):
    nested.validate(ORDER)
    nested.validate({**ORDER, "ship_to": {"street": "Main 1", "zip": "10115"}, "bill_to": None,
                     "attrs": {"color": 3, "a b": 4}, "state": "PAID", "hash": b"abcd", "at": 1_700_000_000_000,
                     "ratio": 1, "weight": 2.5, "flag": True, "parent": {**ORDER, "items": []}})


@pytest.mark.parametrize("payload, field, value, expected_part", [
    ({**ORDER, "items": [ITEM, ITEM, {**ITEM, "sku": 7}]}, "payload.items[2].sku", 7, "string"),
    ({**ORDER, "items": [ITEM, {"sku": "x", "qty": 1}]}, "payload.items[1].price", MISSING, "field 'price'"),
    ({**ORDER, "items": [{**ITEM, "colour": "red"}]}, "payload.items[0].colour", "red", "no field 'colour'"),
    ({**ORDER, "items": [{**ITEM, "qty": 2**40}]}, "payload.items[0].qty", 2**40, "32-bit"),
    ({**ORDER, "items": {"sku": "x"}}, "payload.items", {"sku": "x"}, "array<Item>"),
    ({**ORDER, "ship_to": {"street": "Main 1", "zip": 10115}}, "payload.ship_to.zip", 10115, "string"),
    ({**ORDER, "bill_to": {"street": "Main 1"}}, "payload.bill_to.zip", MISSING, "field 'zip'"),
    ({**ORDER, "ship_to": "Main 1"}, "payload.ship_to", "Main 1", "one of [null, Address]"),
    ({**ORDER, "attrs": {"color": "red"}}, "payload.attrs.color", "red", "long"),
    ({**ORDER, "attrs": {"a b": 1.5}}, 'payload.attrs["a b"]', 1.5, "long"),
    ({**ORDER, "state": "LOST"}, "payload.state", "LOST", "one of the symbols [NEW, PAID]"),
    ({**ORDER, "hash": "abc"}, "payload.hash", "abc", "exactly 4 bytes"),
    ({**ORDER, "items": [{**ITEM, "price": "\u20ac"}]}, "payload.items[0].price", "\u20ac", "bytes"),
    ({**ORDER, "at": "2024-01-01"}, "payload.at", "2024-01-01", "long (timestamp-millis)"),
    ({**ORDER, "ratio": 1e39}, "payload.ratio", 1e39, "float (32-bit"),
    ({**ORDER, "weight": "1.5"}, "payload.weight", "1.5", "double"),
    ({**ORDER, "flag": 1}, "payload.flag", 1, "boolean"),
    ({**ORDER, "id": 5}, "payload.id", 5, "string (uuid)"),
    ({**ORDER, "parent": {**ORDER, "items": [{**ITEM, "sku": None}]}}, "payload.parent.items[0].sku", None, "string"),
])
def test_nested_mismatch_names_the_deepest_field(nested, payload, field, value, expected_part):
    err = rejected(nested, payload)
    assert err.field == field
    assert err.value == value or (value is MISSING and err.value is MISSING)
    assert expected_part in err.expected


# --- loading rules -------------------------------------------------------------------------------
def test_every_bad_file_is_reported_at_once(tmp_path):
    good = record("Ok", f("a", "string"))
    write_schema(tmp_path, "shop/Ok/v1", good)
    write_schema(tmp_path, "shop/Gap/v1", record("Gap", f("a", "string")))
    write_schema(tmp_path, "shop/Gap/v3", record("Gap", f("a", "string")))
    write_schema(tmp_path, "shop/Named/v01", record("Named", f("a", "string")))
    write_schema(tmp_path, "shop/Named/schema", record("Named", f("a", "string")))
    write_schema(tmp_path, "shop/NotJson/v1", "{nope")
    write_schema(tmp_path, "shop/NotAvro/v1", record("NotAvro", f("a", "strng")))
    write_schema(tmp_path, "shop/Wrong/v1", record("Right", f("a", "string")))
    write_schema(tmp_path, "shop/Scalar/v1", {"type": "string"})
    write_schema(tmp_path, "shop/Defaults/v1", record(
        "Defaults", f("a", ["string", "null"], default=None), f("b", "int", default=1), f("b", "long")))
    (tmp_path / "README.md").write_text("ignored")
    (tmp_path / "shop" / ".hidden").mkdir()
    (tmp_path / "shop" / "stray.txt").write_text("x")
    with pytest.raises(ConfigError) as info:
        SchemaRegistry.load(tmp_path)
    problems = info.value.problems
    text = "\n".join(problems)

    def has(prefix: str, *parts: str) -> bool:
        return any(p.startswith(prefix) and all(x in p for x in parts) for p in problems)

    root = tmp_path.name
    assert has(f"{root}/shop/Gap:", "consecutive", "v2.avsc"), text
    assert has(f"{root}/shop/Named/v01.avsc:", "v<N>.avsc"), text
    assert has(f"{root}/shop/Named/schema.avsc:", "v<N>.avsc"), text
    assert has(f"{root}/shop/Named:", "no schema versions"), text
    assert has(f"{root}/shop/NotJson/v1.avsc:", "JSON"), text
    assert has(f"{root}/shop/NotAvro/v1.avsc:", "not a valid Avro schema", "strng"), text
    assert has(f"{root}/shop/Wrong/v1.avsc:", "'Right'", "'Wrong'"), text
    assert has(f"{root}/shop/Scalar/v1.avsc:", "must be a record"), text
    assert has(f"{root}/shop/Defaults/v1.avsc:", "Defaults.a", "first branch"), text
    assert has(f"{root}/shop/Defaults/v1.avsc:", "Defaults.b", "duplicate field"), text
    assert has(f"{root}/shop/stray.txt:", "event-type folders"), text
    assert not any("Ok" in p or "README" in p or "hidden" in p for p in problems), text
    assert len(problems) == 11, text


def test_record_name_may_carry_a_namespace_and_versions_sort_numerically(tmp_path):
    for n in range(1, 12):
        write_schema(tmp_path, f"shop/Cart/v{n}", record("Cart", f("a", "string"), namespace="shop.events"))
    reg = SchemaRegistry.load(tmp_path)
    assert [v.version for v in reg.versions("shop", "Cart")] == list(range(1, 12))
    assert reg.latest("shop", "Cart").ref == "shop/Cart/v11"


def test_bad_aggregate_type_folder(tmp_path):
    write_schema(tmp_path, "sh op/Cart/v1", record("Cart", f("a", "string")))
    with pytest.raises(ConfigError, match="sh op"):
        SchemaRegistry.load(tmp_path)


# --- compatibility -------------------------------------------------------------------------------
V1 = record("OrderPlaced", f("order_id", "string"), f("amount_cents", "long"))


def compat(old, new, mode="backward"):
    return check_compatibility(old, new, mode, old="v1", new="v2")


def test_add_field_with_default_is_fully_compatible():
    v2 = record("OrderPlaced", *V1["fields"], f("coupon", ["null", "string"], default=None))
    assert compat(V1, v2, "full") == []


def test_add_field_without_default_breaks_backward_only():
    v2 = record("OrderPlaced", *V1["fields"], f("coupon", "string"))
    assert compat(V1, v2, "backward") == [
        "OrderPlaced.coupon: field added without a default (a v2 reader cannot read v1 data)"]
    assert compat(V1, v2, "forward") == []
    assert check_compatibility(V1, v2) == [
        "OrderPlaced.coupon: field added without a default (a new reader cannot read old data)"]


def test_remove_field_breaks_forward_unless_it_had_a_default():
    v2 = record("OrderPlaced", f("order_id", "string"))
    assert compat(V1, v2, "backward") == []
    [problem] = compat(V1, v2, "forward")
    assert problem.startswith("OrderPlaced.amount_cents: field removed") and "v1 reader cannot read v2 data" in problem
    with_default = record("OrderPlaced", f("order_id", "string"), f("amount_cents", "long", default=0))
    assert compat(with_default, v2, "full") == []


@pytest.mark.parametrize("old, new", [("int", "long"), ("int", "float"), ("int", "double"), ("long", "float"),
                                      ("long", "double"), ("float", "double"), ("string", "bytes"),
                                      ("bytes", "string")])
def test_promotions_are_backward_compatible(old, new):
    assert compat(record("R", f("x", old)), record("R", f("x", new))) == []


@pytest.mark.parametrize("old, new", [("long", "int"), ("double", "float"), ("float", "long"), ("string", "int"),
                                      ("int", "string"), ("boolean", "int")])
def test_narrowing_and_unrelated_changes_are_not(old, new):
    [problem] = compat(record("R", f("x", old)), record("R", f("x", new)))
    assert problem == (f"R.x: type changed from {old} to {new}, which is not an Avro promotion "
                       "(a v2 reader cannot read v1 data)")


def test_promotion_is_one_way():
    [problem] = compat(record("R", f("x", "int")), record("R", f("x", "long")), "forward")
    assert problem.startswith("R.x: type changed from int to long") and "v1 reader cannot read v2 data" in problem


def enum_field(*symbols, **extra):
    return record("R", f("state", {"type": "enum", "name": "State", "symbols": list(symbols), **extra}))


def test_enum_symbols():
    [problem] = compat(enum_field("NEW", "PAID", "LOST"), enum_field("NEW", "PAID"))
    assert problem.startswith("R.state: enum symbol 'LOST' removed") and "no default" in problem
    assert compat(enum_field("NEW", "PAID", "LOST"), enum_field("NEW", "PAID", default="NEW")) == []
    assert compat(enum_field("NEW"), enum_field("NEW", "PAID")) == []
    [problem] = compat(enum_field("NEW"), enum_field("NEW", "PAID"), "forward")
    assert problem.startswith("R.state: enum symbol 'PAID' added")


def test_union_changes():
    plain, optional = record("R", f("x", "string")), record("R", f("x", ["null", "string"], default=None))
    assert compat(plain, optional) == []  # non-union writer, union reader
    [problem] = compat(optional, plain)  # union writer, non-union reader: null cannot be read
    assert problem.startswith("R.x: type changed from union [null, string] to string: the branch null")
    wider = record("R", f("x", ["null", "string", "long"], default=None))
    assert compat(optional, wider) == []
    [problem] = compat(optional, wider, "forward")
    assert problem.startswith("R.x: union branch long added: no branch of union [null, string] can read it")
    [problem] = compat(wider, optional)
    assert problem.startswith("R.x: union branch long removed")
    promoted = record("R", f("x", ["null", "string", "double"], default=None))
    assert compat(wider, promoted) == []  # long -> double inside the union
    [problem] = compat(record("R", f("x", "int")), optional)
    assert problem.startswith("R.x: type changed from int to union [null, string]: no branch can read int")


def test_full_mode_reports_both_directions():
    v2 = record("OrderPlaced", f("order_id", "string"), f("coupon", "string"))
    problems = compat(V1, v2, "full")
    assert problems == [
        "OrderPlaced.coupon: field added without a default (a v2 reader cannot read v1 data)",
        "OrderPlaced.amount_cents: field removed, but the v1 schema declares it without a default "
        "(a v1 reader cannot read v2 data)"]


def test_nested_paths_arrays_maps_and_named_types():
    def order(sku_type, values="long"):
        item = record("Item", f("sku", sku_type))
        return record("Order", f("items", {"type": "array", "items": item}),
                      f("attrs", {"type": "map", "values": values}), f("again", ["null", "Item"], default=None))

    [problem] = compat(order("string"), order("int"))
    assert problem.startswith("Order.items[].sku: type changed from string to int")  # reported once, not per use
    [problem] = compat(order("string"), order("string", values="int"))
    assert problem.startswith("Order.attrs{}: type changed from long to int")


def test_named_types_fixed_and_aliases():
    def fixed(name, size, **extra):
        return record("R", f("h", {"type": "fixed", "name": name, "size": size, **extra}))

    [problem] = compat(fixed("Hash", 16), fixed("Hash", 32))
    assert problem.startswith("R.h: fixed Hash size changed from 16 to 32 bytes")
    [problem] = compat(fixed("Hash", 16), fixed("Digest", 16))
    assert problem.startswith("R.h: fixed renamed from Hash to Digest without an alias")
    assert compat(fixed("Hash", 16), fixed("Digest", 16, aliases=["Hash"])) == []
    [problem] = compat(record("Old", f("a", "string")), record("New", f("a", "string")))
    assert problem.startswith("New: record renamed from Old to New")
    assert compat(record("Old", f("a", "string")), record("New", f("a", "string"), aliases=["Old"])) == []
    assert compat(record("R", f("a", "string")), record("R", f("b", "string", aliases=["a"]))) == []
    # namespaces do not matter, unqualified names do (Avro 1.10+ resolution)
    assert compat(record("R", f("a", "string"), namespace="x"), record("R", f("a", "string"), namespace="y")) == []


def test_logical_types():
    def dec(p, s):
        return record("R", f("x", {"type": "bytes", "logicalType": "decimal", "precision": p, "scale": s}))

    assert compat(dec(9, 2), dec(9, 2)) == []
    [problem] = compat(dec(9, 2), dec(12, 2))
    assert problem.startswith("R.x: decimal (precision, scale) changed from (9, 2) to (12, 2)")
    millis = record("R", f("x", {"type": "long", "logicalType": "timestamp-millis"}))
    micros = record("R", f("x", {"type": "long", "logicalType": "timestamp-micros"}))
    [problem] = compat(millis, micros)
    assert "logical type changed from timestamp-millis to timestamp-micros" in problem
    assert compat(record("R", f("x", "long")), millis, "full") == []


def test_recursive_schemas_terminate():
    node_v1 = record("Node", f("v", "int"), f("next", ["null", "Node"], default=None))
    node_v2 = record("Node", f("v", "long"), f("next", ["null", "Node"], default=None),
                     f("tag", "string", default=""))
    assert compat(node_v1, node_v2) == []
    [problem] = compat(node_v1, node_v2, "forward")
    assert problem.startswith("Node.v: type changed from int to long")


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="backward, forward, full"):
        check_compatibility(V1, V1, "sideways")
    with pytest.raises(ValueError, match="sideways"):
        SchemaRegistry.load(REPO_SCHEMAS / "missing").check("sideways")


# --- cross-check with fastavro's own resolution ----------------------------------------------------
def roundtrip(writer: dict, reader: dict, datum) -> object:
    from fastavro import parse_schema

    w, r = parse_schema(writer), parse_schema(reader)
    buf = io.BytesIO()
    schemaless_writer(buf, w, datum)
    buf.seek(0)
    return schemaless_reader(buf, w, r)


ITEMS = {"type": "array", "items": record("Item", f("sku", "string"), f("qty", "int"))}
COMPATIBLE = [  # (old, new, datum written with old, mode the pair satisfies)
    (V1, record("OrderPlaced", *V1["fields"], f("coupon", ["null", "string"], default=None)),
     {"order_id": "o", "amount_cents": 5}, "full"),
    (V1, record("OrderPlaced", f("order_id", "string")), {"order_id": "o", "amount_cents": 5}, "backward"),
    (record("R", f("x", "int")), record("R", f("x", "double")), {"x": 7}, "backward"),
    (record("R", f("x", "string")), record("R", f("x", "bytes")), {"x": "hi"}, "full"),
    (record("R", f("x", "string")), record("R", f("x", ["null", "string"], default=None)), {"x": "hi"}, "backward"),
    (enum_field("A", "B", "C"), enum_field("A", "B", default="A"), {"state": "C"}, "backward"),
    (record("R", f("i", ITEMS)), record("R", f("i", {"type": "array", "items": record(
        "Item", f("sku", "string"), f("qty", "long"), f("note", "string", default=""))})),
     {"i": [{"sku": "a", "qty": 1}]}, "backward"),
    (record("R", f("m", {"type": "map", "values": ["null", "int"]})),
     record("R", f("m", {"type": "map", "values": ["null", "long", "string"]})),
     {"m": {"k": 1, "j": None}}, "backward"),
    (record("Old", f("a", "string")), record("New", f("a", "string"), aliases=["Old"]), {"a": "x"}, "backward"),
]


@pytest.mark.parametrize("old, new, datum, mode", COMPATIBLE)
def test_compatible_pairs_really_resolve_in_fastavro(old, new, datum, mode):
    assert check_compatibility(old, new, mode) == []
    roundtrip(old, new, datum)
    if mode == "full":
        roundtrip(new, old, roundtrip(old, new, datum))


INCOMPATIBLE = [  # (old, new, datum written with old that fastavro cannot read with new)
    (V1, record("OrderPlaced", *V1["fields"], f("coupon", "string")), {"order_id": "o", "amount_cents": 5}),
    (record("R", f("x", "long")), record("R", f("x", "int")), {"x": 7}),
    (enum_field("A", "B", "C"), enum_field("A", "B"), {"state": "C"}),
    (record("R", f("x", ["null", "string"])), record("R", f("x", "string")), {"x": None}),
    (record("R", f("x", {"type": "fixed", "name": "F", "size": 2})),
     record("R", f("x", {"type": "fixed", "name": "F", "size": 3})), {"x": b"ab"}),
    (record("Old", f("a", "string")), record("New", f("a", "string")), {"a": "x"}),
]


@pytest.mark.parametrize("old, new, datum", INCOMPATIBLE)
def test_incompatible_pairs_really_fail_in_fastavro(old, new, datum):
    assert check_compatibility(old, new, "backward")
    with pytest.raises((SchemaResolutionError, ValueError, EOFError)):
        roundtrip(old, new, datum)


# --- CLI -----------------------------------------------------------------------------------------
@pytest.fixture()
def tmp_registry(tmp_path) -> Path:
    write_schema(tmp_path, "order/OrderPlaced/v1", V1)
    write_schema(tmp_path, "order/OrderPlaced/v2", record("OrderPlaced", *V1["fields"], f("coupon", "string")))
    write_schema(tmp_path, "order/OrderConfirmed/v1", record("OrderConfirmed", f("status", "string")))
    return tmp_path


def test_cli_check_lists_every_problem_and_exits_1(tmp_registry):
    runner = CliRunner()
    result = runner.invoke(app, ["check", "--root", str(tmp_registry)])
    assert result.exit_code == 1, result.output
    assert ("order/OrderPlaced v1 -> v2: OrderPlaced.coupon: field added without a default "
            "(a v2 reader cannot read v1 data)") in result.output
    assert runner.invoke(app, ["check", "--root", str(tmp_registry), "--mode", "forward"]).exit_code == 0
    result = runner.invoke(app, ["check", "--root", str(tmp_registry), "--mode", "full", "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["mode"] == "full" and data["pairs_checked"] == 1
    assert [p.split(": ", 2)[1] for p in data["problems"]] == ["OrderPlaced.coupon"]


def test_cli_check_clean_registry_and_list(tmp_registry):
    runner = CliRunner()
    (tmp_registry / "order/OrderPlaced/v2.avsc").unlink()
    assert runner.invoke(app, ["check", "--root", str(tmp_registry)]).exit_code == 0
    result = runner.invoke(app, ["list", "--root", str(tmp_registry), "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)["event_types"]
    assert [(r["type"], r["versions"], r["latest"]) for r in rows] == [
        ("OrderConfirmed", [1], "order/OrderConfirmed/v1"), ("OrderPlaced", [1], "order/OrderPlaced/v1")]
    result = runner.invoke(app, ["list", "--root", str(tmp_registry)])
    assert result.exit_code == 0 and "order/OrderPlaced: v1; latest order/OrderPlaced/v1" in result.stdout


def test_cli_reports_bad_files_with_exit_2(tmp_registry):
    write_schema(tmp_registry, "order/OrderPlaced/v4", V1)
    result = CliRunner().invoke(app, ["check", "--root", str(tmp_registry)])
    assert result.exit_code == 2 and "order/OrderPlaced: versions must be consecutive" in result.output
