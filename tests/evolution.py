"""Random model evolutions for property tests: a compact schema spec, pydantic classes built from
it, and hypothesis strategies that apply random changes (add, remove, rename, retype, enum
values, nested messages) release after release.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from typing import Any, Optional

from hypothesis import strategies as st
from pydantic import Field, create_model

from tests.conftest import make_model

# Field types the generator uses. "Inner" is a nested message, "Colour" an enum.
SCALARS = ("float", "int", "int32", "uint64", "sint64", "fixed32", "str", "bytes", "bool")
CONTAINERS = ("list[float]", "list[str]", "dict[str,int]", "list[Inner]", "list[list[int]]")
TYPES = SCALARS + CONTAINERS + ("opt:float", "opt:str", "Inner", "Colour")
MESSAGES = ("PredictRequest", "PredictResponse", "Inner")
FIELD_NAMES = tuple(f"f{i}" for i in range(8))
ENUM_VALUES = ("red", "green", "blue", "cyan", "dark_grey")

_PY = {"float": float, "int": int, "str": str, "bytes": bytes, "bool": bool}
_OVERRIDES = {"int32", "uint64", "sint64", "fixed32"}


@dataclass
class FieldDecl:
    type: str
    renamed_from: str | None = None


@dataclass
class Spec:
    """One release's schema: message -> field name -> declaration, plus the enum's values."""

    messages: dict[str, dict[str, FieldDecl]] = field(default_factory=dict)
    colours: list[str] = field(default_factory=lambda: ["red"])

    def copy(self) -> Spec:
        return Spec(
            {m: {n: FieldDecl(d.type, None) for n, d in fs.items()} for m, fs in self.messages.items()},
            list(self.colours),
        )


def _annotation(type_name: str, inner: Any, colour: Any) -> tuple[Any, Any]:
    """(annotation, pydantic Field) for one declared type."""
    extra: dict[str, Any] = {}
    if type_name in _OVERRIDES:
        extra = {"protoreg": {"type": type_name}}
        return int, Field(json_schema_extra=extra)
    if type_name.startswith("opt:"):
        return Optional[_PY[type_name[4:]]], Field(default=None)
    table: dict[str, Any] = {
        "list[float]": list[float],
        "list[str]": list[str],
        "dict[str,int]": dict[str, int],
        "list[Inner]": list[inner] if inner is not None else list[float],
        "list[list[int]]": list[list[int]],
        "Inner": inner if inner is not None else float,
        "Colour": colour,
    }
    if type_name in table:
        return table[type_name], Field()
    return _PY[type_name], Field()


def build_model(name: str, version: str, spec: Spec) -> type:
    colour = enum.Enum("Colour", {v: v for v in spec.colours}, type=str)  # type: ignore[misc]

    def fields_for(message: str, inner: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field_name, decl in spec.messages.get(message, {}).items():
            annotation, info = _annotation(decl.type, inner, colour)
            if decl.renamed_from:
                extra = dict(info.json_schema_extra or {}) if isinstance(info.json_schema_extra, dict) else {}
                protoreg = dict(extra.get("protoreg", {}))
                protoreg["renamed_from"] = decl.renamed_from
                extra["protoreg"] = protoreg
                info = Field(default=info.default, json_schema_extra=extra)
            out[field_name] = (annotation, info)
        return out

    inner = create_model("Inner", **fields_for("Inner", None))  # type: ignore[call-overload]
    request = create_model("Request", **fields_for("PredictRequest", inner))  # type: ignore[call-overload]
    response = create_model("Response", **fields_for("PredictResponse", inner))  # type: ignore[call-overload]
    return make_model(name, version, request, response)


# -- strategies ------------------------------------------------------------------------------


@st.composite
def change(draw: st.DrawFn, spec: Spec) -> Spec:
    """``spec`` with one random change applied (a new object)."""
    new = spec.copy()
    message = draw(st.sampled_from(MESSAGES))
    fields = new.messages.setdefault(message, {})
    kind = draw(st.sampled_from(("add", "add", "remove", "rename", "retype", "enum_add", "enum_remove")))
    if kind == "add" or not fields:
        free = [n for n in FIELD_NAMES if n not in fields]
        if free:
            type_name = draw(st.sampled_from(TYPES if message != "Inner" else SCALARS + ("Colour",)))
            fields[draw(st.sampled_from(free))] = FieldDecl(type_name)
    elif kind == "remove":
        del fields[draw(st.sampled_from(sorted(fields)))]
    elif kind == "rename":
        old = draw(st.sampled_from(sorted(fields)))
        free = [n for n in FIELD_NAMES if n not in fields]
        if free:
            target = draw(st.sampled_from(free))
            decl = fields.pop(old)
            fields[target] = FieldDecl(decl.type, old)
    elif kind == "retype":
        name = draw(st.sampled_from(sorted(fields)))
        choices = TYPES if message != "Inner" else SCALARS + ("Colour",)
        fields[name] = FieldDecl(draw(st.sampled_from(choices)))
    elif kind == "enum_add":
        free = [v for v in ENUM_VALUES if v not in new.colours]
        if free:
            new.colours.append(draw(st.sampled_from(free)))
    elif kind == "enum_remove" and len(new.colours) > 1:
        new.colours.remove(draw(st.sampled_from(new.colours)))
    if not new.messages.get("PredictRequest"):
        new.messages["PredictRequest"] = {"f0": FieldDecl("float")}
    if not new.messages.get("PredictResponse"):
        new.messages["PredictResponse"] = {"f0": FieldDecl("str")}
    return new


@st.composite
def evolutions(draw: st.DrawFn, max_releases: int = 6) -> list[tuple[str, Spec]]:
    """A sequence of (version, spec), versions strictly increasing, with some new majors."""
    spec = Spec(
        {
            "PredictRequest": {"f0": FieldDecl("float"), "f1": FieldDecl("Inner")},
            "PredictResponse": {"f0": FieldDecl("Colour")},
            "Inner": {"f0": FieldDecl("int")},
        }
    )
    major, minor = 1, 0
    releases = [(f"{major}.{minor}.0", spec)]
    for _ in range(draw(st.integers(1, max_releases - 1))):
        for _ in range(draw(st.integers(1, 3))):
            spec = draw(change(spec))
        if draw(st.integers(0, 4)) == 0:
            major, minor = major + 1, 0
        else:
            minor += 1
        releases.append((f"{major}.{minor}.0", spec))
    return releases


# -- filling and comparing protobuf messages ---------------------------------------------------


def fill(message: Any, rng: random.Random, depth: int = 0) -> None:
    """Set random values on every field of a protobuf message (recursively, bounded)."""

    for fd in message.DESCRIPTOR.fields:
        if rng.random() < 0.25:
            continue  # leave some fields absent: presence must survive too
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            value_fd = fd.message_type.fields_by_name["value"]
            target = getattr(message, fd.name)
            for _ in range(rng.randint(0, 2)):
                key = f"k{rng.randint(0, 9)}"
                if value_fd.message_type is not None:
                    if depth < 3:
                        fill(target[key], rng, depth + 1)
                else:
                    target[key] = _scalar(value_fd, rng)
            continue
        if fd.is_repeated:
            target = getattr(message, fd.name)
            for _ in range(rng.randint(0, 3)):
                if fd.message_type is not None:
                    if depth < 3:
                        fill(target.add(), rng, depth + 1)
                else:
                    target.append(_scalar(fd, rng))
            continue
        if fd.message_type is not None:
            if fd.message_type.full_name.startswith("google.protobuf."):
                getattr(message, fd.name).seconds = rng.randint(0, 10**6)
            elif depth < 3:
                fill(getattr(message, fd.name), rng, depth + 1)
                getattr(message, fd.name).SetInParent()
            continue
        setattr(message, fd.name, _scalar(fd, rng))


def _scalar(fd: Any, rng: random.Random) -> Any:
    from google.protobuf.descriptor import FieldDescriptor as FD

    t = fd.type
    if fd.enum_type is not None:
        return rng.choice([v.number for v in fd.enum_type.values])
    if t in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return rng.choice([0.0, 1.5, -2.25, 1e10])
    if t == FD.TYPE_BOOL:
        return rng.choice([True, False])
    if t == FD.TYPE_STRING:
        return rng.choice(["", "a", "héllo"])
    if t == FD.TYPE_BYTES:
        return rng.choice([b"", b"\x00\xff", b"abc"])
    if t in (FD.TYPE_UINT32, FD.TYPE_UINT64, FD.TYPE_FIXED32, FD.TYPE_FIXED64):
        return rng.choice([0, 1, 127, 2**31 - 1])
    return rng.choice([0, 1, -1, 2**31 - 1, -(2**31)])


def signature(fd: Any) -> tuple[Any, ...]:
    """What must be equal for a field's value to be compared across releases."""
    kind = fd.message_type.name if fd.message_type is not None else None
    enum_kind = fd.enum_type.name if fd.enum_type is not None else None
    return (fd.name, fd.type, fd.is_repeated, kind, enum_kind)


def assert_shared_equal(old: Any, new: Any, path: str = "") -> int:
    """Every field of ``old`` that ``new`` still has (same number, name and type) is equal.

    Returns how many fields were compared, so callers can tell the check was not vacuous.
    """
    compared = 0
    new_fields = {fd.number: fd for fd in new.DESCRIPTOR.fields}
    for fd in old.DESCRIPTOR.fields:
        other = new_fields.get(fd.number)
        if other is None or signature(fd) != signature(other):
            continue
        where = f"{path}.{fd.name}"
        old_value, new_value = getattr(old, fd.name), getattr(new, other.name)
        is_map = fd.message_type is not None and fd.message_type.GetOptions().map_entry
        if is_map:
            assert set(old_value.keys()) == set(new_value.keys()), where
            value_fd = fd.message_type.fields_by_name["value"]
            for key in old_value:
                if value_fd.message_type is not None:
                    compared += assert_shared_equal(old_value[key], new_value[key], f"{where}[{key}]")
                else:
                    assert old_value[key] == new_value[key], where
            compared += 1
        elif fd.is_repeated:
            assert len(old_value) == len(new_value), where
            for i, (a, b) in enumerate(zip(old_value, new_value, strict=True)):
                if fd.message_type is not None:
                    compared += assert_shared_equal(a, b, f"{where}[{i}]")
                else:
                    assert a == b, where
            compared += 1
        elif fd.message_type is not None:
            assert old.HasField(fd.name) == new.HasField(other.name), where
            if old.HasField(fd.name) and not fd.message_type.full_name.startswith("google.protobuf."):
                compared += assert_shared_equal(old_value, new_value, where)
            compared += 1
        else:
            if fd.has_presence:
                assert old.HasField(fd.name) == new.HasField(other.name), where
            assert old_value == new_value, f"{where}: {old_value!r} != {new_value!r}"
            compared += 1
    return compared
