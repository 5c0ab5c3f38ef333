"""Reading any protobuf API into the IR: ``.proto`` trees and ``FileDescriptorSet`` files.

``protoreg breaking`` compares APIs protoreg did not write, so this module turns descriptors into
IR packages, one per file: nested messages and enums get dotted names (``Order.Line``), field
types are full names (``acme.v1.Order.Line``, ``google.protobuf.Timestamp``), map entries become
``map`` fields, proto3 ``optional`` and real oneof members have explicit presence, plain proto3
scalars implicit presence (``singular``), proto2 ``required`` sets ``Field.required``. What the IR
has no place for is kept per field in ``Package.facts`` as :class:`~protoreg.registry.ir.FieldFacts`: a
real oneof's name, proto2 ``required`` and defaults, and a map's entry message. The resolved
features of each message and enum are kept in ``Package.features`` (name -> feature -> value
name): ``json_format`` (``ALLOW`` or ``LEGACY_BEST_EFFORT``) for both, ``enum_type`` (``OPEN``
or ``CLOSED``) for enums.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

from google.protobuf import descriptor_pb2

from .. import ir
from ..errors import ProtoregError
from ..protoc import compile_descriptor_set, proto_files
from ..typemap import DESCRIPTOR_SCALARS, Kind

FDP = descriptor_pb2.FieldDescriptorProto

MESSAGE_NUMBER_END = ir.FIELD_NUMBER_MAX + 1  # descriptor message ranges are end-exclusive

Features = dict[str, str]  # feature name -> value name, e.g. {"json_format": "ALLOW"}

# Field numbers of descriptor.proto, the steps of a source-info path.
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MESSAGE_FIELD, _MESSAGE_NESTED, _MESSAGE_ENUM = 2, 3, 4
_ENUM_VALUE, _SERVICE_METHOD = 2, 2
_MESSAGE_FEATURES = ("json_format",)
_ENUM_FEATURES = ("enum_type", "json_format")


def load_tree(path: Path) -> list[ir.Package]:
    """The IR of a directory of ``.proto`` files, or of a binary ``FileDescriptorSet`` file."""
    if path.is_dir():
        files = proto_files(path)
        if not files:
            raise ProtoregError(
                f'"{path}" holds no .proto files; point at a directory of .proto files or a FileDescriptorSet file'
            )
        descriptor_set = compile_descriptor_set(path, files)
        wanted = set(files)
        return [file_to_package(f) for f in descriptor_set.file if f.name in wanted]
    if path.is_file():
        try:
            descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())
        except Exception as error:  # protobuf raises DecodeError and friends
            raise ProtoregError(
                f'"{path}" is not a binary FileDescriptorSet ({error}); build one with '
                "protoc --descriptor_set_out, or pass a directory of .proto files"
            ) from error
        return [file_to_package(f) for f in descriptor_set.file]
    raise ProtoregError(f'"{path}" does not exist; pass a directory of .proto files or a FileDescriptorSet file')


def load_trees(paths: Sequence[Path]) -> list[list[ir.Package]]:
    """:func:`load_tree` for each path, side by side: each directory is compiled by its own
    ``protoc`` process, so on two cores the wait halves (the IR conversion after each is quick)."""
    with ThreadPoolExecutor(max_workers=max(1, min(4, len(paths)))) as pool:
        return list(pool.map(load_tree, paths))


def _type_name(name: str) -> str:
    return name[1:] if name.startswith(".") else name


def file_to_package(file: descriptor_pb2.FileDescriptorProto) -> ir.Package:
    messages: list[ir.Message] = []
    enums: list[ir.Enum] = []
    facts: dict[str, dict[int, ir.FieldFacts]] = {}
    features: dict[str, Features] = {}
    proto3 = file.syntax == "proto3"
    prefix = f".{file.package}." if file.package else "."
    file_features = _resolve(edition_defaults(file_edition(file)), file.options.features)
    # protoc's source info: a descriptor path (field numbers of descriptor.proto and indexes) ->
    # its span, whose first number is the 0-based line.
    spans = {tuple(loc.path): loc.span[0] + 1 for loc in file.source_code_info.location if loc.span}
    lines: dict[str, int] = {}

    def place(name: str, path: tuple[int, ...]) -> None:
        if path in spans:
            lines[name] = spans[path]

    def add_enum(enum: descriptor_pb2.EnumDescriptorProto, name: str, parent: Features,
                 path: tuple[int, ...]) -> None:
        enums.append(_enum(name, enum))
        resolved = _resolve(parent, enum.options.features)
        features[name] = {k: resolved[k] for k in _ENUM_FEATURES}
        place(name, path)
        for k, value in enumerate(enum.value):
            place(f"{name}.{value.name}", (*path, _ENUM_VALUE, k))

    for i, enum in enumerate(file.enum_type):
        add_enum(enum, enum.name, file_features, (_FILE_ENUM, i))

    def visit(message: descriptor_pb2.DescriptorProto, name: str, parent: Features, path: tuple[int, ...]) -> None:
        place(name, path)
        for k, f in enumerate(message.field):
            place(f"{name}.{f.name}", (*path, _MESSAGE_FIELD, k))
        resolved = _resolve(parent, message.options.features)
        features[name] = {k: resolved[k] for k in _MESSAGE_FEATURES}
        entries = {f"{prefix}{name}.{m.name}": m for m in message.nested_type if m.options.map_entry}
        fields: list[ir.Field] = []
        message_facts: dict[int, ir.FieldFacts] = {}
        for f in message.field:
            in_real_oneof = f.HasField("oneof_index") and not f.proto3_optional
            known = ir.FieldFacts(
                oneof=message.oneof_decl[f.oneof_index].name if in_real_oneof else None,
                wire_required=f.label == FDP.LABEL_REQUIRED,
                default=f.default_value if f.HasField("default_value") else None,
                entry=_type_name(f.type_name) if f.label == FDP.LABEL_REPEATED and f.type_name in entries else None,
            )
            if known != ir.NO_FACTS:
                message_facts[f.number] = known
            fields.append(_field(f, entries, proto3, in_real_oneof))
        if message_facts:
            facts[name] = message_facts
        messages.append(
            ir.Message(
                name=name,
                fields=tuple(fields),
                reserved_numbers=tuple(
                    ir.ReservedRange(r.start, min(r.end, MESSAGE_NUMBER_END) - 1) for r in message.reserved_range
                ),
                reserved_names=tuple(message.reserved_name),
            )
        )
        for j, nested in enumerate(message.nested_type):
            if not nested.options.map_entry:
                visit(nested, f"{name}.{nested.name}", resolved, (*path, _MESSAGE_NESTED, j))
        for j, enum in enumerate(message.enum_type):
            add_enum(enum, f"{name}.{enum.name}", resolved, (*path, _MESSAGE_ENUM, j))

    for i, message in enumerate(file.message_type):
        visit(message, message.name, file_features, (_FILE_MESSAGE, i))
    for i, service in enumerate(file.service):
        place(service.name, (_FILE_SERVICE, i))
        for k, method in enumerate(service.method):
            place(f"{service.name}.{method.name}", (_FILE_SERVICE, i, _SERVICE_METHOD, k))
    services = tuple(
        ir.Service(
            name=s.name,
            methods=tuple(
                ir.Method(
                    m.name,
                    _type_name(m.input_type),
                    _type_name(m.output_type),
                    m.client_streaming,
                    m.server_streaming,
                )
                for m in s.method
            ),
        )
        for s in file.service
    )
    return ir.Package(
        package=file.package,
        model=file.package,
        messages=tuple(messages),
        enums=tuple(enums),
        services=services,
        file_name=file.name,
        facts=facts,
        features=features,
        lines=lines,
    )


def file_edition(file: descriptor_pb2.FileDescriptorProto) -> int:
    """The file's edition; proto2 and proto3 files are the editions ``EDITION_PROTO2``/``PROTO3``."""
    if file.syntax == "editions":
        return int(file.edition)
    return int(descriptor_pb2.EDITION_PROTO3 if file.syntax == "proto3" else descriptor_pb2.EDITION_PROTO2)


def edition_defaults(edition: int) -> Features:
    """The default of each feature the rules compare, in ``edition``.

    Read from protobuf's own declaration of the features (``descriptor.proto``'s
    ``edition_defaults``): the value of the newest edition at or before ``edition``. Edition
    numbers are ordered like the editions. The Python runtime resolves features the same way but
    exposes the result only through private methods (a test compares the two).
    """
    return dict(_edition_defaults(edition))


@cache
def _edition_defaults(edition: int) -> tuple[tuple[str, str], ...]:
    defaults = []
    for name in sorted({*_MESSAGE_FEATURES, *_ENUM_FEATURES}):
        field = descriptor_pb2.FeatureSet.DESCRIPTOR.fields_by_name[name]
        ordered = sorted((d.edition, d.value) for d in field.GetOptions().edition_defaults)
        defaults.append((name, next((value for e, value in reversed(ordered) if e <= edition), ordered[0][1])))
    return tuple(defaults)


def _resolve(parent: Features, features: descriptor_pb2.FeatureSet) -> Features:
    """``parent``'s features overridden by those set explicitly on a file, message or enum."""
    resolved = dict(parent)
    for name in parent:
        if features.HasField(name):
            values = features.DESCRIPTOR.fields_by_name[name].enum_type.values_by_number
            resolved[name] = values[getattr(features, name)].name
    return resolved


def _field(
    f: descriptor_pb2.FieldDescriptorProto,
    entries: dict[str, descriptor_pb2.DescriptorProto],
    proto3: bool,
    in_real_oneof: bool,
) -> ir.Field:
    json_name = f.json_name if f.HasField("json_name") else None
    if f.label == FDP.LABEL_REPEATED and f.type_name in entries:
        entry = entries[f.type_name]
        key = next(x for x in entry.field if x.number == 1)
        value = next(x for x in entry.field if x.number == 2)
        kind, type_ = _kind_and_type(value)
        return ir.Field(f.name, f.number, type_, kind, "map", _kind_and_type(key)[1], json_name=json_name)
    kind, type_ = _kind_and_type(f)
    label: ir.Label
    if f.label == FDP.LABEL_REPEATED:
        label = "repeated"
    elif proto3 and kind != "message" and not f.proto3_optional and not in_real_oneof:
        label = "singular"
    else:
        label = "optional"
    return ir.Field(f.name, f.number, type_, kind, label, required=f.label == FDP.LABEL_REQUIRED, json_name=json_name)


def _kind_and_type(f: descriptor_pb2.FieldDescriptorProto) -> tuple[Kind, str]:
    if f.type in DESCRIPTOR_SCALARS:
        return "scalar", DESCRIPTOR_SCALARS[f.type]
    if f.type == FDP.TYPE_ENUM:
        return "enum", _type_name(f.type_name)
    return "message", _type_name(f.type_name)  # messages and groups


def _enum(name: str, enum: descriptor_pb2.EnumDescriptorProto) -> ir.Enum:
    return ir.Enum(
        name=name,
        values=tuple(ir.EnumValue(v.name, v.number) for v in enum.value),
        reserved_numbers=tuple(ir.ReservedRange(r.start, r.end) for r in enum.reserved_range),
        reserved_names=tuple(enum.reserved_name),
    )
