"""Schema extraction: the DESIGN.md mapping table, and every refusal names model, path, problem."""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Literal, Optional

import pytest
from pydantic import BaseModel, Field

from protoreg.registry.errors import ModelLoadError, SchemaError
from protoreg.registry.schema import extract_schema
from tests.conftest import make_model


class Colour(str, enum.Enum):
    """A colour."""

    red = "red"
    dark_blue = "dark-blue"


class Address(BaseModel):
    """Where someone lives."""

    street: str = Field(description="Street and number.")
    zip_code: Optional[str] = None


class Rich(BaseModel):
    """Every supported type once."""

    text: str
    blob: bytes
    flag: bool
    count: int
    small: int = Field(json_schema_extra={"protoreg": {"type": "sint32"}})
    ratio: float
    single: float = Field(json_schema_extra={"protoreg": {"type": "float"}})
    colour: Colour
    mood: Literal["happy", "sad"]
    address: Address
    tags: list[str]
    matrix: list[list[float]]
    scores: dict[str, float]
    groups: dict[str, list[int]]
    maybe: Optional[float] = None
    defaulted: float = 1.5
    when: datetime
    took: timedelta


class Out(BaseModel):
    value: float


def fields_of(schema, message):  # type: ignore[no-untyped-def]
    return {f.name: f for f in schema.message(message).fields}


def test_mapping_table_covers_design() -> None:
    schema = extract_schema(make_model("rich_model", "1.0.0", Rich, Out))
    f = fields_of(schema, "PredictRequest")
    assert (f["text"].type.name, f["blob"].type.name, f["flag"].type.name) == ("string", "bytes", "bool")
    assert f["count"].type.name == "int64"
    assert f["small"].type.name == "sint32"
    assert f["ratio"].type.name == "double"  # never 32-bit float unless asked
    assert f["single"].type.name == "float"
    assert (f["colour"].type.kind, f["colour"].type.name) == ("enum", "Colour")
    assert (f["mood"].type.kind, f["mood"].type.name) == ("enum", "PredictRequestMood")
    assert (f["address"].type.kind, f["address"].type.name) == ("message", "Address")
    assert (f["tags"].label, f["tags"].type.name) == ("repeated", "string")
    assert (f["matrix"].label, f["matrix"].type.name) == ("repeated", "DoubleList")
    assert (f["scores"].label, f["scores"].key_type, f["scores"].type.name) == ("map", "string", "double")
    assert (f["groups"].label, f["groups"].type.name) == ("map", "Int64List")
    assert f["maybe"].label == "optional" and not f["maybe"].required
    assert f["defaulted"].label == "optional" and not f["defaulted"].required
    assert f["text"].required
    assert f["when"].type.name == "google.protobuf.Timestamp"
    assert f["took"].type.name == "google.protobuf.Duration"
    wrapper = fields_of(schema, "DoubleList")["values"]
    assert (wrapper.label, wrapper.type.name) == ("repeated", "double")
    colour = schema.enum("Colour")
    assert [(v.name, v.value) for v in colour.values] == [("COLOUR_RED", "red"), ("COLOUR_DARK_BLUE", "dark-blue")]
    assert colour.description == "A colour."
    assert schema.message("Address").description == "Where someone lives."
    assert fields_of(schema, "Address")["street"].description == "Street and number."


def test_nested_container_wrappers_are_named_by_key_and_value() -> None:
    class Nested(BaseModel):
        by_name: list[dict[str, float]]
        by_id: list[dict[int, float]]
        deep: list[list[list[str]]]

    schema = extract_schema(make_model("wrap_model", "1.0.0", Nested, Out))
    f = fields_of(schema, "PredictRequest")
    assert (f["by_name"].type.name, f["by_id"].type.name) == ("DoubleMap", "Int64DoubleMap")
    assert fields_of(schema, "Int64DoubleMap")["entries"].key_type == "int64"
    assert f["deep"].type.name == "StringListList"
    assert fields_of(schema, "StringListList")["values"].type.name == "StringList"


def test_iris_schema_reads_class_attributes_without_training() -> None:
    from iris_model import IrisModel

    schema = extract_schema(IrisModel)  # a class, not an instance: no SVC is fitted
    assert schema.model == "iris_model" and schema.version == "1.0.0"
    assert [f.name for f in schema.message("PredictRequest").fields] == [
        "sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert all(f.type.name == "double" and f.required for f in schema.message("PredictRequest").fields)


def test_recursion_through_lists_and_optionals_is_allowed() -> None:
    class Node(BaseModel):
        children: list[Node] = []
        parent: Optional[Node] = None

    Node.model_rebuild()
    schema = extract_schema(make_model("tree_model", "1.0.0", Node, Out))
    assert fields_of(schema, "PredictRequest")["children"].type.name == "PredictRequest"


def test_required_recursive_loop_is_refused() -> None:
    class Loop(BaseModel):
        again: Loop

    Loop.model_rebuild()

    class Holder(BaseModel):
        loop: Loop

    with pytest.raises(SchemaError, match="loop"):
        extract_schema(make_model("loop_model", "1.0.0", Holder, Out))


@pytest.mark.parametrize(
    ("annotation", "problem"),
    [
        (set[int], 'type "set'),
        (tuple[int, int], "not supported"),
        (int | str, "not supported"),
        (Literal[1, 2], "only Literals of strings"),
        (list[Optional[int]], "Optional values"),
        (Optional[list[int]], "Optional list"),
        (dict[float, int], "map key type"),
    ],
)
def test_unsupported_types_name_model_path_and_type(annotation: object, problem: str) -> None:
    bad = type("Bad", (BaseModel,), {"__annotations__": {"thing": annotation}})
    with pytest.raises(SchemaError) as caught:
        extract_schema(make_model("bad_model", "1.0.0", bad, Out))
    message = str(caught.value)
    assert 'Model "bad_model"' in message
    assert '"PredictRequest.thing"' in message
    assert problem in message


def test_invalid_field_names_are_refused() -> None:
    bad = type("Bad", (BaseModel,), {"__annotations__": {"camelCase": int}})
    with pytest.raises(SchemaError, match="lower_snake_case"):
        extract_schema(make_model("bad_model", "1.0.0", bad, Out))


def test_names_colliding_after_case_folding_are_refused() -> None:
    bad = type("Bad", (BaseModel,), {"__annotations__": {"ab_c": int, "a_bc": int}})
    with pytest.raises(SchemaError, match="collides"):
        extract_schema(make_model("bad_model", "1.0.0", bad, Out))


def test_two_classes_with_one_name_are_refused() -> None:
    first = type("Point", (BaseModel,), {"__annotations__": {"x": float}})
    second = type("Point", (BaseModel,), {"__annotations__": {"y": float}})
    holder = type("Holder", (BaseModel,), {"__annotations__": {"a": first, "b": second}})
    with pytest.raises(SchemaError, match='"Point"'):
        extract_schema(make_model("dup_model", "1.0.0", holder, Out))


def test_enum_values_that_fold_together_are_refused() -> None:
    clash = enum.Enum("Clash", {"A": "a-b", "B": "a_b"}, type=str)
    holder = type("Holder", (BaseModel,), {"__annotations__": {"c": clash}})
    with pytest.raises(SchemaError, match="both become"):
        extract_schema(make_model("enum_model", "1.0.0", holder, Out))


def test_bad_type_override_is_refused() -> None:
    class Bad(BaseModel):
        count: int = Field(json_schema_extra={"protoreg": {"type": "double"}})

    with pytest.raises(SchemaError, match='override "double"'):
        extract_schema(make_model("bad_model", "1.0.0", Bad, Out))


def test_model_name_must_be_a_package_name() -> None:
    with pytest.raises(SchemaError, match="lower_snake_case"):
        extract_schema(make_model("Bad-Name", "1.0.0", Out, Out))


def test_reserved_message_names_are_refused() -> None:
    inner = type("PredictResponse", (BaseModel,), {"__annotations__": {"x": int}})
    holder = type("Holder", (BaseModel,), {"__annotations__": {"inner": inner}})
    with pytest.raises(SchemaError, match="reserved"):
        extract_schema(make_model("res_model", "1.0.0", holder, Out))


def test_object_without_model_attributes_is_refused() -> None:
    class NotAModel:
        qualified_name = "x"

    with pytest.raises(ModelLoadError, match="lacks"):
        extract_schema(NotAModel)


def test_fingerprint_ignores_version_but_not_descriptions() -> None:
    a = extract_schema(make_model("fp_model", "1.0.0", Address, Out))
    b = extract_schema(make_model("fp_model", "2.0.0", Address, Out))
    assert a.fingerprint == b.fingerprint

    class Address2(BaseModel):
        street: str = Field(description="Another description.")
        zip_code: Optional[str] = None

    c = extract_schema(make_model("fp_model", "1.0.0", Address2, Out))
    assert c.fingerprint != a.fingerprint
