"""The type mapping: which Python types become which proto types, and how proto types relate.

This module is the one home of every rule about types. Schema extraction (``schema``), numbering
(``numbering``), the IR (``ir``), the checker (``compat``), descriptor reading
(``compat/descriptors``) and the server's binding and converters (``service/binding``,
``service/convert``) all read it; none of them keeps a table of its own.

* :data:`SCALARS`: protobuf's scalar types, each with its descriptor type number, its *wire group*
  (scalars of one group read each other's bytes; protobuf's own rules) and its *JSON form* (how
  proto3 JSON writes it). Wire- and JSON-compatibility are derived from these two columns.
* :data:`WELL_KNOWN`: the well-known message types protoreg renders, with their import paths.
* :data:`PYTHON_TYPES`: the Python types a pydantic field may use, each with the proto type it
  becomes, the proto types a field may choose instead (``json_schema_extra``), whether it may key
  a ``dict``, and the codec that converts its values on the wire.
* *Type keys* (``single:scalar:int64``): the wire shape of a field, as the numbering ledger
  stores it, and which changes of it keep a field number.

Adding a Python type is one row of :data:`PYTHON_TYPES` plus its codec (see CONTRIBUTING.md).
Enums, nested models, lists, dicts and ``Optional`` are structure, not rows: ``schema`` handles
them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

Kind = Literal["scalar", "message", "enum"]
TypeChange = Literal["same", "compatible", "json_incompatible", "incompatible"]
"""How a field's type changed for readers: ``compatible`` keeps both the binary and the JSON
encoding, ``json_incompatible`` keeps only the binary one."""

TYPE_CHANGE_ORDER: tuple[TypeChange, ...] = ("same", "compatible", "json_incompatible", "incompatible")


# -- proto scalars ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Scalar:
    """One protobuf scalar type.

    ``wire_group``: scalars of one group decode each other's bytes (protobuf's rules; ``string``
    to ``bytes`` is also allowed, one way, see :func:`scalar_wire_compatible`). ``json_form``: how
    proto3 JSON writes a value (64-bit integers as strings, bytes as base64). ``descriptor_type``
    is ``FieldDescriptorProto.Type``.
    """

    name: str
    descriptor_type: int
    wire_group: str
    json_form: str


SCALARS: tuple[Scalar, ...] = (
    Scalar("double", 1, "double", "number"),
    Scalar("float", 2, "float", "number"),
    Scalar("int32", 5, "varint", "number"),
    Scalar("int64", 3, "varint", "string"),
    Scalar("uint32", 13, "varint", "number"),
    Scalar("uint64", 4, "varint", "string"),
    Scalar("sint32", 17, "zigzag", "number"),
    Scalar("sint64", 18, "zigzag", "string"),
    Scalar("fixed32", 7, "fixed32", "number"),
    Scalar("fixed64", 6, "fixed64", "string"),
    Scalar("sfixed32", 15, "fixed32", "number"),
    Scalar("sfixed64", 16, "fixed64", "string"),
    Scalar("bool", 8, "varint", "bool"),
    Scalar("string", 9, "string", "string"),
    Scalar("bytes", 12, "bytes", "base64"),
)
SCALARS_BY_NAME: dict[str, Scalar] = {s.name: s for s in SCALARS}
SCALAR_TYPES: tuple[str, ...] = tuple(s.name for s in SCALARS)
"""Every proto scalar type name, in the order of the protobuf language guide."""
DESCRIPTOR_SCALARS: dict[int, str] = {s.descriptor_type: s.name for s in SCALARS}
"""``FieldDescriptorProto.Type`` number -> scalar name (for reading compiled descriptors)."""
INTEGER_TYPES: tuple[str, ...] = tuple(
    s.name for s in SCALARS if s.wire_group in ("varint", "zigzag", "fixed32", "fixed64") and s.name != "bool"
)
FLOAT_TYPES: tuple[str, ...] = ("double", "float")


def is_integral(proto_type: str) -> bool:
    """Whether a proto scalar type holds integers (``int64``, ``sint32``, ``fixed64``...)."""
    return proto_type in INTEGER_TYPES


def scalar_wire_compatible(before: str, after: str) -> bool:
    """Whether bytes written as scalar ``before`` are read correctly as ``after``."""
    if before == after:
        return True
    if before == "string" and after == "bytes":
        return True
    b, a = SCALARS_BY_NAME.get(before), SCALARS_BY_NAME.get(after)
    return b is not None and a is not None and b.wire_group == a.wire_group


def scalar_change(before: str, after: str) -> TypeChange:
    """How a scalar type change reads on the wire and in JSON (buf's tables give the same)."""
    if before == after:
        return "same"
    if not scalar_wire_compatible(before, after):
        return "incompatible"
    if SCALARS_BY_NAME[before].json_form == SCALARS_BY_NAME[after].json_form:
        return "compatible"
    return "json_incompatible"


def worst_change(*changes: TypeChange) -> TypeChange:
    return max(changes, key=TYPE_CHANGE_ORDER.index)


# -- well-known message types ----------------------------------------------------------------


@dataclass(frozen=True)
class WellKnown:
    """A message type from protobuf's well-known types, and the file that declares it."""

    name: str
    import_path: str


TIMESTAMP = WellKnown("google.protobuf.Timestamp", "google/protobuf/timestamp.proto")
DURATION = WellKnown("google.protobuf.Duration", "google/protobuf/duration.proto")
WELL_KNOWN: tuple[WellKnown, ...] = (TIMESTAMP, DURATION)
WELL_KNOWN_IMPORTS: dict[str, str] = {w.name: w.import_path for w in WELL_KNOWN}
"""Full message name -> the ``import`` a ``.proto`` file needs to use it."""


# -- codecs: one value of a field on the wire <-> its Python value ------------------------------


class InvalidValue(ValueError):
    """A value on the wire that has no Python value; the server answers INVALID_ARGUMENT."""


class ScalarCodec(Protocol):
    """Converts a scalar field's value (what protobuf's Python runtime holds) to and from Python."""

    message: bool  # False: values are set with setattr/append

    def decode(self, value: Any) -> Any: ...

    def encode(self, value: Any) -> Any: ...


class MessageValueCodec(Protocol):
    """Converts a message-typed value (a well-known type) to Python, and fills one from Python."""

    message: bool  # True: values are filled into a message the runtime creates

    def decode(self, value: Any) -> Any: ...

    def fill(self, target: Any, value: Any) -> None: ...


class IdentityCodec:
    """Scalars whose Python value is what protobuf's runtime holds already (str, int, ...)."""

    message = False

    def decode(self, value: Any) -> Any:
        return value

    def encode(self, value: Any) -> Any:
        return value


class TimestampCodec:
    """``google.protobuf.Timestamp`` <-> an aware ``datetime`` (UTC)."""

    message = True

    def decode(self, value: Any) -> datetime:
        try:
            result: datetime = value.ToDatetime(tzinfo=UTC)
        except (ValueError, OverflowError) as error:  # seconds or nanos outside Timestamp's range
            raise InvalidValue(f"not a valid {TIMESTAMP.name} ({error})") from error
        return result

    def fill(self, target: Any, value: datetime) -> None:
        target.FromDatetime(value)


class DurationCodec:
    """``google.protobuf.Duration`` <-> ``timedelta``."""

    message = True

    def decode(self, value: Any) -> timedelta:
        try:
            result: timedelta = value.ToTimedelta()
        except (ValueError, OverflowError) as error:  # seconds or nanos outside Duration's range
            raise InvalidValue(f"not a valid {DURATION.name} ({error})") from error
        return result

    def fill(self, target: Any, value: timedelta) -> None:
        target.FromTimedelta(value)


# -- Python types ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PythonType:
    """One Python type a pydantic field may use, and what it becomes.

    ``proto`` is the proto type (a scalar name, or a well-known message's full name), ``kind``
    says which. ``overrides`` are the proto types a field may pick instead with
    ``json_schema_extra={"protoreg": {"type": ...}}`` (always including ``proto``). ``map_key``:
    whether ``dict[python, X]`` is allowed (the key then has type ``proto``). ``codec`` converts
    values between the wire and Python; ``import_path`` is the file a message type needs.
    """

    python: type
    proto: str
    kind: Literal["scalar", "message"]
    codec: ScalarCodec | MessageValueCodec
    overrides: tuple[str, ...] = ()
    map_key: bool = False
    import_path: str | None = None

    def __post_init__(self) -> None:
        if not self.overrides:
            object.__setattr__(self, "overrides", (self.proto,))

    @property
    def title(self) -> str:
        """The name used for the type in messages to people (``int``, ``datetime``)."""
        return self.python.__name__


def _message(python: type, well_known: WellKnown, codec: MessageValueCodec) -> PythonType:
    return PythonType(python, well_known.name, "message", codec, import_path=well_known.import_path)


IDENTITY = IdentityCodec()

PYTHON_TYPES: tuple[PythonType, ...] = (
    # Order matters only for messages to people ("use str, bytes, bool, ..."); lookups are by
    # identity, so bool is never mistaken for int.
    PythonType(str, "string", "scalar", IDENTITY, map_key=True),
    PythonType(bytes, "bytes", "scalar", IDENTITY),
    PythonType(bool, "bool", "scalar", IDENTITY, map_key=True),
    PythonType(int, "int64", "scalar", IDENTITY, overrides=INTEGER_TYPES, map_key=True),
    PythonType(float, "double", "scalar", IDENTITY, overrides=FLOAT_TYPES),
    _message(datetime, TIMESTAMP, TimestampCodec()),
    _message(timedelta, DURATION, DurationCodec()),
)


def python_type(tp: object) -> PythonType | None:
    """The row for Python type ``tp`` (compared by identity), or None when it has none."""
    return next((row for row in PYTHON_TYPES if row.python is tp), None)


def supported_types_text() -> str:
    """What a field may be, for the error that refuses anything else."""
    scalars = ", ".join(row.title for row in PYTHON_TYPES if row.kind == "scalar")
    messages = [row.title for row in PYTHON_TYPES if row.kind == "message"]
    tail = ", ".join(messages[:-1]) + (" or " if len(messages) > 1 else "") + messages[-1]
    return (
        f"{scalars}, an Enum, a Literal of strings, a pydantic model, list, dict[str, X], Optional, {tail}"
    )


def map_key_type(tp: object) -> str | None:
    """The proto key type of ``dict[tp, X]``, or None when ``tp`` cannot key a map."""
    row = python_type(tp)
    return row.proto if row is not None and row.map_key else None


def map_key_types_text() -> str:
    keys = [row.title for row in PYTHON_TYPES if row.map_key]
    return ", ".join(keys[:-1]) + " or " + keys[-1]


# -- Python enums ------------------------------------------------------------------------------


def enum_members(tp: type[enum.Enum]) -> list[tuple[str, enum.Enum]]:
    """Each member of a Python enum with the label its proto value name is made from.

    String-valued enums are labelled by value (``Species("setosa")`` -> ``SPECIES_SETOSA``),
    others by member name, so ``IntEnum`` members keep readable names.
    """
    members = list(tp)
    if all(isinstance(m.value, str) for m in members):
        return [(m.value, m) for m in members]
    return [(m.name, m) for m in members]


# -- type keys: the wire shape of a field ------------------------------------------------------

Cardinality = Literal["single", "repeated", "map"]


def cardinality(label: str) -> Cardinality:
    """``single``, ``repeated`` or ``map``: what must stay for a field to keep its number."""
    if label in ("optional", "singular"):
        return "single"
    return "repeated" if label == "repeated" else "map"


def type_key(label: str, kind: str, type_name: str, key_type: str | None = None) -> str:
    """A string that identifies a field's wire shape (``single:scalar:int64``,
    ``map:message:Point:string``); the numbering ledger stores it per field number."""
    key = f"{cardinality(label)}:{kind}:{type_name}"
    if label == "map":
        key += f":{key_type}"
    return key


def type_key_compatible(before: str, after: str) -> bool:
    """Whether a number may keep serving a field whose type key changed from before to after."""
    if before == after:
        return True
    b, a = before.split(":"), after.split(":")
    if b[0] != a[0] or b[1] != a[1]:
        return False  # cardinality or kind changed
    if b[1] != "scalar":
        return False  # enums and messages stand alone
    if len(b) == 4 and not scalar_wire_compatible(b[3], a[3]):
        return False  # map keys
    return scalar_wire_compatible(b[2], a[2])


def type_key_text(key: str) -> str:
    """A type key as a reader writes the type: ``repeated double``, ``map<string, Point>``."""
    parts = key.split(":")
    base = parts[2]
    if parts[0] == "repeated":
        return f"repeated {base}"
    if parts[0] == "map":
        return f"map<{parts[3]}, {base}>"
    return base


def field_type_text(label: str, type_name: str, key_type: str | None = None) -> str:
    """A field's type as a reader writes it: ``double``, ``repeated Species``, ``map<string, X>``."""
    if label == "map":
        return f"map<{key_type}, {type_name}>"
    if label == "repeated":
        return f"repeated {type_name}"
    return type_name

