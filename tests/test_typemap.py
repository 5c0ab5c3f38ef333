"""The type mapping (``registry/typemap.py``) against protobuf's own runtime and the docs.

The wire groups and JSON forms are data in one table; these tests check that table against what
protobuf's Python runtime does with real bytes and real JSON, so a wrong row fails here before
it can mislead numbering or the checker.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError, Message
from hypothesis import given
from hypothesis import strategies as st

from protoreg.registry import typemap

ROOT = Path(__file__).resolve().parent.parent
FDP = descriptor_pb2.FieldDescriptorProto


def _message_classes() -> dict[str, type[Message]]:
    """One message per scalar type, ``T{type} { optional <type> v = 1; }``, from a real pool."""
    file = descriptor_pb2.FileDescriptorProto(name="typemap_test.proto", package="typemap_test", syntax="proto3")
    for scalar in typemap.SCALARS:
        message = file.message_type.add(name=f"T{scalar.name}")
        message.oneof_decl.add(name="_v")
        message.field.add(name="v", number=1, type=scalar.descriptor_type, label=FDP.LABEL_OPTIONAL,
                          oneof_index=0, proto3_optional=True)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        s.name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"typemap_test.T{s.name}"))
        for s in typemap.SCALARS
    }


CLASSES = _message_classes()
SAMPLES: dict[str, list[Any]] = {"string": ["a"], "bytes": [b"a", b"\xff"], "bool": [True]}


def _reads_back(before: str, after: str) -> bool:
    """Whether every sample written as ``before`` is read as the same value as ``after``."""
    for value in SAMPLES.get(before, [1]):
        data = CLASSES[before](v=value).SerializeToString()
        try:
            decoded = CLASSES[after].FromString(data)
        except DecodeError:
            return False  # e.g. bytes that are not UTF-8, read as a string
        if not decoded.HasField("v"):
            return False  # another wire type: the field lands in the unknown fields
        got = decoded.v
        if isinstance(value, bytes | str) and isinstance(got, bytes | str):
            if (got.encode() if isinstance(got, str) else got) != (value.encode() if isinstance(value, str) else value):
                return False
        elif got != value:
            return False
    return True


def test_descriptor_type_numbers_are_protobufs() -> None:
    scalar_types = {
        FDP.Type.Value(name) for name in FDP.Type.keys() if name not in ("TYPE_GROUP", "TYPE_MESSAGE", "TYPE_ENUM")
    }
    assert set(typemap.DESCRIPTOR_SCALARS) == scalar_types
    for scalar in typemap.SCALARS:
        assert getattr(FDP, f"TYPE_{scalar.name.upper()}") == scalar.descriptor_type


@pytest.mark.parametrize("before", typemap.SCALAR_TYPES)
@pytest.mark.parametrize("after", typemap.SCALAR_TYPES)
def test_wire_compatibility_is_what_protobuf_reads(before: str, after: str) -> None:
    # A group reads both ways (bool reading a zigzag varint only looks right one way);
    # string -> bytes is protobuf's one one-way change.
    both_ways = _reads_back(before, after) and _reads_back(after, before)
    one_way = (before, after) == ("string", "bytes") and _reads_back(before, after)
    assert typemap.scalar_wire_compatible(before, after) == (both_ways or one_way)


def test_wire_groups_are_the_designs() -> None:
    groups: dict[str, set[str]] = {}
    for scalar in typemap.SCALARS:
        groups.setdefault(scalar.wire_group, set()).add(scalar.name)
    shared = sorted(sorted(g) for g in groups.values() if len(g) > 1)
    assert shared == [
        ["bool", "int32", "int64", "uint32", "uint64"],
        ["fixed32", "sfixed32"],
        ["fixed64", "sfixed64"],
        ["sint32", "sint64"],
    ]
    assert typemap.scalar_wire_compatible("string", "bytes")
    assert not typemap.scalar_wire_compatible("bytes", "string")


def _json_value(scalar: str) -> Any:
    value = SAMPLES.get(scalar, [1])[0]
    return json_format.MessageToDict(CLASSES[scalar](v=value))["v"]


@pytest.mark.parametrize("scalar", typemap.SCALARS, ids=lambda s: s.name)
def test_json_forms_are_what_protobuf_writes(scalar: typemap.Scalar) -> None:
    written = _json_value(scalar.name)
    expected = {
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "string": lambda v: isinstance(v, str),
        "bool": lambda v: isinstance(v, bool),
        "base64": lambda v: isinstance(v, str) and base64.b64decode(v) == b"a",
    }[scalar.json_form]
    assert expected(written), (scalar.name, written)
    if scalar.json_form == "string" and scalar.name != "string":
        assert written == "1"  # 64-bit integers travel as decimal strings


def test_json_compatible_changes_are_bufs_groups() -> None:
    pairs = {
        frozenset((a, b))
        for a in typemap.SCALAR_TYPES
        for b in typemap.SCALAR_TYPES
        if a != b and typemap.scalar_change(a, b) == "compatible"
    }
    buf = (("int32", "uint32"), ("int64", "uint64"), ("fixed32", "sfixed32"), ("fixed64", "sfixed64"))
    assert pairs == {frozenset(p) for p in buf}


def test_python_rows_are_consistent() -> None:
    for row in typemap.PYTHON_TYPES:
        assert row.proto in row.overrides, row
        if row.kind == "scalar":
            assert row.proto in typemap.SCALARS_BY_NAME and not row.codec.message, row
            assert set(row.overrides) <= set(typemap.SCALAR_TYPES), row
        else:
            assert row.codec.message and row.import_path == typemap.WELL_KNOWN_IMPORTS[row.proto], row
        assert typemap.python_type(row.python) is row


def test_bool_is_not_mistaken_for_int() -> None:
    row = typemap.python_type(bool)
    assert row is not None and row.proto == "bool"


def test_readme_type_table_names_every_python_type() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("| pydantic | proto3 |"):]
    table = table[: table.index("\n\n")]
    for row in typemap.PYTHON_TYPES:
        assert re.search(rf"`{row.title}`", table), f"README's type table lacks {row.title}"
        assert row.proto.rsplit(".", 1)[-1] in table, f"README's type table lacks {row.proto}"


LABELS = st.sampled_from(["optional", "singular", "repeated", "map"])
NAMES = st.sampled_from([*typemap.SCALAR_TYPES, "Point", "Species", "google.protobuf.Timestamp"])


@given(LABELS, st.sampled_from(["scalar", "message", "enum"]), NAMES, st.sampled_from(typemap.SCALAR_TYPES))
def test_type_key_reads_back_as_the_type_text(label: str, kind: str, name: str, key: str) -> None:
    key_type = key if label == "map" else None
    type_key = typemap.type_key(label, kind, name, key_type)
    assert typemap.type_key_text(type_key) == typemap.field_type_text(label, name, key_type)
    assert typemap.type_key_compatible(type_key, type_key)
