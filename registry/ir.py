"""The intermediate representation: one numbered proto package, as frozen dataclasses.

The IR is the single input of rendering (``render``), compatibility checking (``compat``) and
descriptor building. It knows nothing about pydantic or SQL. A release snapshot stored in the
registry is an IR package serialised with :func:`package_to_dict`, so rendering a past release
only needs this module and the templates.

Names of messages and enums are full names *inside the package* (``PredictRequest``,
``Address``, or ``Outer.Inner`` for packages read from descriptors). Field types that refer to
other messages or enums use the same names; well-known types use their full proto name
(``google.protobuf.Timestamp``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from . import naming, typemap
from .contract import Contract, contract_from_dict, contract_to_dict
from .typemap import Kind

Label = Literal["optional", "singular", "repeated", "map"]

FIELD_NUMBER_MAX = 536_870_911
"""The largest field number protobuf allows (2**29 - 1)."""

RESERVED_FIELD_NUMBERS = range(19_000, 20_000)
"""Numbers protobuf reserves for its own implementation; never allocated."""

@dataclass(frozen=True)
class ReservedRange:
    """An inclusive range of reserved numbers, ``start to end``."""

    start: int
    end: int

    def __str__(self) -> str:
        return str(self.start) if self.start == self.end else f"{self.start} to {self.end}"

    def __contains__(self, number: object) -> bool:
        return isinstance(number, int) and self.start <= number <= self.end


def compress_ranges(numbers: Iterable[int]) -> tuple[ReservedRange, ...]:
    """Turn a set of numbers into sorted, merged inclusive ranges."""
    ranges: list[ReservedRange] = []
    for number in sorted(set(numbers)):
        if ranges and ranges[-1].end == number - 1:
            ranges[-1] = ReservedRange(ranges[-1].start, number)
        else:
            ranges.append(ReservedRange(number, number))
    return tuple(ranges)


def expand_ranges(ranges: Iterable[ReservedRange]) -> Iterator[int]:
    for reserved in ranges:
        yield from range(reserved.start, reserved.end + 1)


@dataclass(frozen=True)
class Field:
    """One field of a message.

    ``label`` is ``optional`` for a singular field with explicit presence (every singular field
    protoreg renders has it, so ``0.0`` and "absent" differ), ``singular`` for implicit presence
    (only in packages read from descriptors), ``repeated`` or ``map``. ``required`` is the
    pydantic side of the contract: the model cannot run without a value. ``contract`` is the rest
    of it (default, bounds, lengths, pattern, choices, deprecation); ``None`` when the snapshot was
    registered before protoreg recorded contracts, or read from descriptors.
    """

    name: str
    number: int
    type: str
    kind: Kind = "scalar"
    label: Label = "optional"
    key_type: str | None = None
    required: bool = False
    description: str = ""
    json_name: str | None = None
    contract: Contract | None = None

    @property
    def deprecated(self) -> bool:
        return self.contract is not None and self.contract.deprecated is not None

    @property
    def contract_words(self) -> tuple[str, ...]:
        """The contract in plain words for the rendered comment; nothing when not recorded."""
        if self.contract is None:
            return ()
        from .contract import describe

        return tuple(describe(self.contract, required=self.required, implicit=self.label == "singular",
                              unit=self.length_unit))

    @property
    def integral(self) -> bool:
        """Whether the field holds integers (bounds on it compare as integers)."""
        return self.kind == "scalar" and typemap.is_integral(self.type)

    @property
    def length_unit(self) -> str:
        """What ``min_length``/``max_length`` count on this field."""
        if self.label in ("repeated", "map"):
            return "items" if self.label == "repeated" else "entries"
        return "bytes" if self.type == "bytes" else "characters"

    @property
    def proto_type(self) -> str:
        """The type as written in a ``.proto`` file, without the label."""
        if self.label == "map":
            return f"map<{self.key_type}, {self.type}>"
        return self.type

    @property
    def declaration_label(self) -> str:
        """The label keyword written before the type (empty for maps and implicit presence)."""
        if self.label == "optional" and self.kind == "message":
            return ""  # message fields always have presence; the keyword would add nothing
        return {"optional": "optional ", "repeated": "repeated "}.get(self.label, "")

    @property
    def cardinality(self) -> typemap.Cardinality:
        """``single``, ``repeated`` or ``map``: what must match for the number to be kept."""
        return typemap.cardinality(self.label)

    @property
    def type_key(self) -> str:
        """A string that identifies the field's wire shape, for history and comparisons."""
        return typemap.type_key(self.label, self.kind, self.type, self.key_type)

    @property
    def type_text(self) -> str:
        """The type as a reader writes it, label included: ``repeated string``, ``map<string, double>``."""
        return typemap.field_type_text(self.label, self.type, self.key_type)


@dataclass(frozen=True)
class FieldFacts:
    """What a compiled descriptor says about a field that :class:`Field` has no place for.

    Only packages read from descriptors (``protoreg breaking``) have facts; protoreg's own
    renderings have none, so registry snapshots do not store them.
    """

    oneof: str | None = None  # the real oneof the field belongs to (not a proto3 optional)
    wire_required: bool = False  # proto2 ``required``
    default: str | None = None  # a proto2 default value, as written in the descriptor
    entry: str | None = None  # for a map field: the full name of its entry message


NO_FACTS = FieldFacts()


@dataclass(frozen=True)
class Message:
    name: str
    fields: tuple[Field, ...] = ()
    description: str = ""
    reserved_numbers: tuple[ReservedRange, ...] = ()
    reserved_names: tuple[str, ...] = ()

    def field_by_number(self, number: int) -> Field | None:
        return next((f for f in self.fields if f.number == number), None)

    def field_by_name(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class EnumValue:
    """One enum value. ``value`` is the pydantic value it stands for (empty for ``UNSPECIFIED``)."""

    name: str
    number: int
    value: str = ""
    description: str = ""


@dataclass(frozen=True)
class Enum:
    name: str
    values: tuple[EnumValue, ...] = ()
    description: str = ""
    reserved_numbers: tuple[ReservedRange, ...] = ()
    reserved_names: tuple[str, ...] = ()

    def value_by_number(self, number: int) -> EnumValue | None:
        return next((v for v in self.values if v.number == number), None)

    def value_by_name(self, name: str) -> EnumValue | None:
        return next((v for v in self.values if v.name == name), None)


@dataclass(frozen=True)
class Method:
    name: str
    input_type: str
    output_type: str
    client_streaming: bool = False
    server_streaming: bool = False
    description: str = ""


@dataclass(frozen=True)
class Service:
    name: str
    methods: tuple[Method, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class Legacy:
    """The existing API a model line was adopted from (``protoreg adopt``).

    ``request`` and ``response`` are the full names of the legacy messages that became
    ``PredictRequest`` and ``PredictResponse``; ``rpc`` the legacy method path the server also
    answers (empty when none was given); ``files`` the legacy ``.proto`` files as
    ``(path inside proto_versions/, text)``, rendered beside the model's file so the server can
    serve and reflect the legacy service.
    """

    source: str
    request: str
    response: str
    rpc: str = ""
    files: tuple[tuple[str, str], ...] = ()

    @property
    def header(self) -> str:
        return naming.legacy_header(self.source, self.request, self.response, self.rpc)


@dataclass(frozen=True)
class Package:
    """A whole proto package: what one ``.proto`` file of ``proto_versions/`` holds.

    ``model`` and ``version`` name the model release the package was rendered from; for
    packages read from arbitrary descriptors ``model`` is the package name and ``version`` is
    empty.
    """

    package: str
    model: str = ""
    display_name: str = ""
    description: str = ""
    version: str = ""
    messages: tuple[Message, ...] = ()
    enums: tuple[Enum, ...] = ()
    services: tuple[Service, ...] = ()
    file_name: str = ""
    legacy: Legacy | None = None
    """Set on every release of a major line adopted from an existing API (``protoreg adopt``)."""
    facts: Mapping[str, Mapping[int, FieldFacts]] = field(default_factory=dict, compare=False, hash=False)
    """Message name -> field number -> :class:`FieldFacts`, for fields that have any."""
    features: Mapping[str, Mapping[str, str]] = field(default_factory=dict, compare=False, hash=False)
    """Message or enum name -> resolved feature (``json_format``, ``enum_type``) -> value name; read
    from descriptors (``protoreg breaking``), empty for registry releases (always proto3)."""
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, hash=False)
    """Element name (``Order``, ``Order.id``, ``Status.STATUS_OK``, ``OrderService.Get``) -> its
    1-based line in the ``.proto`` file, from protoc's source info (``protoreg breaking``); empty
    for registry releases."""

    @property
    def major(self) -> int:
        return int(self.version.split(".", 1)[0]) if self.version else 0

    @property
    def proto_path(self) -> str:
        """The file's path inside ``proto_versions/``; the directory matches the package."""
        if self.file_name:
            return self.file_name
        return naming.proto_path(self.package, self.model)

    @property
    def release_header(self) -> str:
        """The comment line naming the release this package was rendered from."""
        return naming.release_header(self.model, self.version)

    @property
    def imports(self) -> tuple[str, ...]:
        needed = {
            typemap.WELL_KNOWN_IMPORTS[f.type]
            for m in self.messages
            for f in m.fields
            if f.type in typemap.WELL_KNOWN_IMPORTS
        }
        return tuple(sorted(needed))

    @property
    def contracts_recorded(self) -> bool:
        """Whether this snapshot records field contracts (releases registered before it do not)."""
        return any(f.contract is not None for m in self.messages for f in m.fields)

    def message(self, name: str) -> Message | None:
        return next((m for m in self.messages if m.name == name), None)

    def enum(self, name: str) -> Enum | None:
        return next((e for e in self.enums if e.name == name), None)


# -- serialisation -------------------------------------------------------------------------
# Snapshots are stored as JSON; these functions are the only format. Keys are written in a
# fixed order and unknown keys are ignored so old snapshots stay readable.


def _ranges_to_list(ranges: tuple[ReservedRange, ...]) -> list[list[int]]:
    return [[r.start, r.end] for r in ranges]


def _ranges_from_list(items: list[list[int]]) -> tuple[ReservedRange, ...]:
    return tuple(ReservedRange(int(a), int(b)) for a, b in items)


def _legacy_to_dict(legacy: Legacy) -> dict[str, Any]:
    return {"source": legacy.source, "request": legacy.request, "response": legacy.response, "rpc": legacy.rpc,
            "files": [[path, text] for path, text in legacy.files]}


def _legacy_from_dict(data: dict[str, Any] | None) -> Legacy | None:
    if not data:
        return None
    return Legacy(data["source"], data["request"], data["response"], data.get("rpc", ""),
                  tuple((str(path), str(text)) for path, text in data.get("files", [])))


def package_to_dict(package: Package) -> dict[str, Any]:
    data = _package_to_dict(package)
    if package.legacy is not None:  # only adopted lines carry the key: other snapshots stay as they were
        data["legacy"] = _legacy_to_dict(package.legacy)
    return data


def _package_to_dict(package: Package) -> dict[str, Any]:
    return {
        "package": package.package,
        "model": package.model,
        "display_name": package.display_name,
        "description": package.description,
        "version": package.version,
        "file_name": package.file_name,
        "messages": [
            {
                "name": m.name,
                "description": m.description,
                "fields": [
                    {
                        "name": f.name,
                        "number": f.number,
                        "type": f.type,
                        "kind": f.kind,
                        "label": f.label,
                        "key_type": f.key_type,
                        "required": f.required,
                        "description": f.description,
                        "json_name": f.json_name,
                        # only written when recorded, so older snapshots serialise as they always did
                        **({"contract": contract_to_dict(f.contract)} if f.contract is not None else {}),
                    }
                    for f in m.fields
                ],
                "reserved_numbers": _ranges_to_list(m.reserved_numbers),
                "reserved_names": list(m.reserved_names),
            }
            for m in package.messages
        ],
        "enums": [
            {
                "name": e.name,
                "description": e.description,
                "values": [
                    {"name": v.name, "number": v.number, "value": v.value, "description": v.description}
                    for v in e.values
                ],
                "reserved_numbers": _ranges_to_list(e.reserved_numbers),
                "reserved_names": list(e.reserved_names),
            }
            for e in package.enums
        ],
        "services": [
            {
                "name": s.name,
                "description": s.description,
                "methods": [
                    {
                        "name": r.name,
                        "input_type": r.input_type,
                        "output_type": r.output_type,
                        "client_streaming": r.client_streaming,
                        "server_streaming": r.server_streaming,
                        "description": r.description,
                    }
                    for r in s.methods
                ],
            }
            for s in package.services
        ],
    }


def package_from_dict(data: dict[str, Any]) -> Package:
    return Package(
        package=data["package"],
        model=data.get("model", ""),
        display_name=data.get("display_name", ""),
        description=data.get("description", ""),
        version=data.get("version", ""),
        file_name=data.get("file_name", ""),
        legacy=_legacy_from_dict(data.get("legacy")),
        messages=tuple(
            Message(
                name=m["name"],
                description=m.get("description", ""),
                fields=tuple(
                    Field(
                        name=f["name"],
                        number=int(f["number"]),
                        type=f["type"],
                        kind=f.get("kind", "scalar"),
                        label=f.get("label", "optional"),
                        key_type=f.get("key_type"),
                        required=bool(f.get("required", False)),
                        description=f.get("description", ""),
                        json_name=f.get("json_name"),
                        contract=contract_from_dict(f["contract"]) if "contract" in f else None,
                    )
                    for f in m.get("fields", [])
                ),
                reserved_numbers=_ranges_from_list(m.get("reserved_numbers", [])),
                reserved_names=tuple(m.get("reserved_names", [])),
            )
            for m in data.get("messages", [])
        ),
        enums=tuple(
            Enum(
                name=e["name"],
                description=e.get("description", ""),
                values=tuple(
                    EnumValue(
                        name=v["name"],
                        number=int(v["number"]),
                        value=v.get("value", ""),
                        description=v.get("description", ""),
                    )
                    for v in e.get("values", [])
                ),
                reserved_numbers=_ranges_from_list(e.get("reserved_numbers", [])),
                reserved_names=tuple(e.get("reserved_names", [])),
            )
            for e in data.get("enums", [])
        ),
        services=tuple(
            Service(
                name=s["name"],
                description=s.get("description", ""),
                methods=tuple(
                    Method(
                        name=r["name"],
                        input_type=r["input_type"],
                        output_type=r["output_type"],
                        client_streaming=bool(r.get("client_streaming", False)),
                        server_streaming=bool(r.get("server_streaming", False)),
                        description=r.get("description", ""),
                    )
                    for r in s.get("methods", [])
                ),
            )
            for s in data.get("services", [])
        ),
    )
