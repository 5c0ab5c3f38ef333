"""Every serialised form reads back as what was written (hypothesis round trips).

The registry stores two forms and reads them on every check: IR snapshots
(``ir.package_to_dict``/``package_from_dict``, the ``releases.snapshot_json`` column) and lineages
(``Lineage.to_dict``/``from_dict``, the ``lineages.lineage_json`` column). Both go through JSON
here, as in the database. (The release header and type keys have their own round trips in
``test_naming.py`` and ``test_typemap.py``.)
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protoreg.registry import ir
from protoreg.registry.lineage import Lineage, lineage_of
from protoreg.registry.typemap import SCALAR_TYPES

NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
TYPE_NAMES = st.from_regex(r"[A-Z][A-Za-z0-9]{0,8}(\.[A-Z][A-Za-z0-9]{0,5})?", fullmatch=True)
TEXT = st.text(max_size=20)
NUMBERS = st.integers(1, ir.FIELD_NUMBER_MAX)


@st.composite
def fields(draw: st.DrawFn) -> ir.Field:
    kind = draw(st.sampled_from(["scalar", "message", "enum"]))
    type_ = draw(st.sampled_from(SCALAR_TYPES)) if kind == "scalar" else draw(TYPE_NAMES)
    label = draw(st.sampled_from(["optional", "singular", "repeated", "map"]))
    return ir.Field(
        name=draw(NAMES),
        number=draw(NUMBERS),
        type=type_,
        kind=kind,  # type: ignore[arg-type]
        label=label,  # type: ignore[arg-type]
        key_type=draw(st.sampled_from(["string", "int64", "bool"])) if label == "map" else None,
        required=draw(st.booleans()),
        description=draw(TEXT),
        json_name=draw(st.none() | NAMES),
    )


RANGES = st.builds(lambda a, n: ir.ReservedRange(a, a + n), NUMBERS, st.integers(0, 50))


def messages() -> st.SearchStrategy[ir.Message]:
    return st.builds(
        ir.Message,
        name=TYPE_NAMES,
        fields=st.lists(fields(), max_size=4).map(tuple),
        description=TEXT,
        reserved_numbers=st.lists(RANGES, max_size=3).map(tuple),
        reserved_names=st.lists(NAMES, max_size=3).map(tuple),
    )


def enums() -> st.SearchStrategy[ir.Enum]:
    values = st.builds(ir.EnumValue, name=NAMES.map(str.upper), number=st.integers(0, 2**31 - 1), value=TEXT,
                       description=TEXT)
    return st.builds(
        ir.Enum,
        name=TYPE_NAMES,
        values=st.lists(values, max_size=4).map(tuple),
        description=TEXT,
        reserved_numbers=st.lists(RANGES, max_size=2).map(tuple),
        reserved_names=st.lists(NAMES, max_size=2).map(tuple),
    )


def services() -> st.SearchStrategy[ir.Service]:
    methods = st.builds(ir.Method, name=TYPE_NAMES, input_type=TYPE_NAMES, output_type=TYPE_NAMES,
                        client_streaming=st.booleans(), server_streaming=st.booleans(), description=TEXT)
    return st.builds(ir.Service, name=TYPE_NAMES, methods=st.lists(methods, max_size=3).map(tuple), description=TEXT)


def packages() -> st.SearchStrategy[ir.Package]:
    return st.builds(
        ir.Package,
        package=st.builds(lambda m, v: f"{m}.v{v}", NAMES, st.integers(0, 20)),
        model=NAMES,
        display_name=TEXT,
        description=TEXT,
        version=st.sampled_from(["", "1.0.0", "0.3.1-rc.1", "12.4.0+build"]),
        messages=st.lists(messages(), max_size=4).map(tuple),
        enums=st.lists(enums(), max_size=3).map(tuple),
        services=st.lists(services(), max_size=2).map(tuple),
        file_name=st.sampled_from(["", "acme/v1/shop.proto"]),
    )


def _through_json(data: Any) -> Any:
    return json.loads(json.dumps(data, sort_keys=True))


@given(packages())
def test_ir_snapshots_read_back_equal(package: ir.Package) -> None:
    stored = _through_json(ir.package_to_dict(package))
    assert ir.package_from_dict(stored) == package
    assert ir.package_to_dict(ir.package_from_dict(stored)) == stored


# each example is a whole release history; on a loaded CI machine drawing one can pass hypothesis's
# time budget for data generation, which says nothing about the property
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(packages(), min_size=1, max_size=4))
def test_lineages_read_back_equal(snapshots: list[ir.Package]) -> None:
    lineage = lineage_of((f"1.{i}.0", p) for i, p in enumerate(snapshots))
    stored = _through_json(lineage.to_dict())
    again = Lineage.from_dict(stored)
    assert again == lineage
    assert again.to_dict() == stored
    for key, scope in lineage.scopes.items():  # the questions the checker asks get the same answers
        for number in list(scope.by_number)[:5]:
            assert again.holder(key, number, None) == lineage.holder(key, number, None)
            assert again.reserved(key, number, None) == lineage.reserved(key, number, None)
        for name in list(scope.by_name)[:5]:
            assert again.holder(key, None, name) == lineage.holder(key, None, name)
            assert again.reserved(key, None, name) == lineage.reserved(key, None, name)


def test_a_schemas_renames_are_those_its_tree_declares() -> None:
    """``ModelSchema.renames()`` (what check uses) agrees with ``renames_of`` over the stored tree."""
    from pydantic import BaseModel, Field

    from protoreg.registry.compat.engine import renames_of
    from protoreg.registry.schema import extract_schema

    class Inner(BaseModel):
        code: str = Field(json_schema_extra={"protoreg": {"renamed_from": ["zip", "postcode"]}})

    class In(BaseModel):
        amount: float = Field(json_schema_extra={"protoreg": {"renamed_from": "total"}})
        inner: Inner
        plain: int

    class Out(BaseModel):
        label: str

    class Renamer:
        qualified_name = "renamer"
        display_name = "Renamer"
        description = "d"
        version = "1.0.0"
        input_schema = In
        output_schema = Out

    schema = extract_schema(Renamer)
    assert schema.renames() == renames_of(schema.to_dict())
    assert schema.renames() == {("PredictRequest", "amount"): frozenset({"total"}),
                                ("Inner", "code"): frozenset({"zip", "postcode"})}
