"""Reading an existing API and fitting a model's schema to it: the plan of ``protoreg adopt``.

The ``.proto`` files are compiled by the reference compiler (``protoc`` from grpcio-tools) and read
into the IR (:mod:`protoreg.registry.compat.descriptors`). The legacy request and response messages
are paired with ``PredictRequest`` and ``PredictResponse``, and walked together with the model's
schema: message and enum fields pair the types they refer to, so nested messages and enums reachable
from the roots are paired too. A field of the model pairs with the legacy field of the same name
(names are what JSON and text clients see) and must have exactly its type, cardinality and a
presence the model can honour; every mismatch is listed with the line to write. The plan says which
numbers are kept, which legacy fields are reserved (the model lacks them), which fields are new
(numbered above every number in use) and which have implicit presence.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .. import ir, naming, typemap
from ..compat.descriptors import file_to_package
from ..errors import ProtoregError, UsageError
from ..numbering import History, Slot
from ..protoc import compile_descriptor_set
from ..schema import FieldSpec, ModelSchema, split_optional
from .record import Adoption, LegacyReservation, merge_ranges

WELL_KNOWN_PREFIX = "google/protobuf/"


class AdoptionMismatchError(ProtoregError):
    """The model's schema does not fit the existing API; nothing was recorded (exit code 1)."""

    def __init__(self, mismatches: list[Mismatch]) -> None:
        self.mismatches = mismatches
        super().__init__(
            f"the model does not fit the existing API ({len(mismatches)} mismatches); nothing was recorded. "
            "Change the model as listed above and run `protoreg adopt` again"
        )


@dataclass(frozen=True)
class Mismatch:
    """One thing of the model that does not fit the existing API, and the line to write."""

    where: str  # PredictRequest.sepal_length (model side) = iris_model_input.sepal_length
    problem: str
    fix: str

    def describe(self) -> str:
        return f"{self.where}: {self.problem}; write: {self.fix}"


@dataclass(frozen=True)
class Kept:
    """A field or enum value whose number comes from the existing API."""

    scope: str  # the model's message or enum
    name: str
    number: int
    legacy: str  # the legacy message or enum's full name
    implicit: bool = False


@dataclass(frozen=True)
class Plan:
    """What ``adopt`` records: the adoption, the seeded ledger, and the lines ``--dry-run`` shows."""

    adoption: Adoption
    history: History
    kept: tuple[Kept, ...]
    reserved: tuple[tuple[str, str, int], ...]  # (scope, name, number) of legacy fields the model lacks
    pairs: tuple[tuple[str, str], ...] = field(default=())  # (model name, legacy full name)

    def lines(self) -> list[str]:
        out = [self.adoption.describe()]
        out += [f"paired {legacy} -> {name}" for name, legacy in self.pairs]
        for k in self.kept:
            presence = " (implicit presence)" if k.implicit else ""
            out.append(f"kept {k.scope}.{k.name} = {k.number} from {k.legacy}{presence}")
        out += [f"reserved {scope}.{name} = {number} (in the existing API, not in the model)"
                for scope, name, number in self.reserved]
        return out


@dataclass
class _Legacy:
    """Every message and enum of the compiled files, by full name."""

    messages: dict[str, ir.Message] = field(default_factory=dict)
    enums: dict[str, ir.Enum] = field(default_factory=dict)
    facts: dict[str, dict[int, ir.FieldFacts]] = field(default_factory=dict)
    syntax: dict[str, str] = field(default_factory=dict)  # message or enum full name -> its file's syntax
    file_of: dict[str, str] = field(default_factory=dict)  # full name -> file
    methods: dict[str, ir.Method] = field(default_factory=dict)  # /pkg.Service/Method -> method


def _json_name(name: str) -> str:
    """protoc's default JSON name: underscores dropped, the next letter upper-cased."""
    return re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), name).replace("_", "")


def read_legacy(files: list[Path]) -> tuple[_Legacy, list[tuple[str, str]]]:
    """Compile ``files`` with protoc (from their common directory, so their imports resolve
    relative to it) and index them. Returns the index and the legacy files to render beside the
    model (path relative to that directory, text)."""
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise UsageError(f'--proto "{missing[0]}" is not a file; pass the .proto file(s) that define the existing API')
    resolved = [f.resolve() for f in files]
    root = Path(os.path.commonpath([str(f.parent) for f in resolved]))
    relative = sorted({str(path.relative_to(root)) for path in resolved})
    descriptor_set = compile_descriptor_set(root, relative, include_imports=True)
    legacy = _Legacy()
    texts: list[tuple[str, str]] = []
    for file in descriptor_set.file:
        if file.name.startswith(WELL_KNOWN_PREFIX):
            continue
        on_disk = root / file.name
        if on_disk.is_file():
            texts.append((file.name, on_disk.read_text(encoding="utf-8")))
        package = file_to_package(file)
        prefix = f"{file.package}." if file.package else ""
        syntax = file.syntax or "proto2"
        for message in package.messages:
            legacy.messages[prefix + message.name] = message
            legacy.facts[prefix + message.name] = dict(package.facts.get(message.name, {}))
            legacy.syntax[prefix + message.name] = syntax
            legacy.file_of[prefix + message.name] = file.name
        for enum in package.enums:
            legacy.enums[prefix + enum.name] = enum
            legacy.syntax[prefix + enum.name] = syntax
        for service in package.services:
            for method in service.methods:
                legacy.methods[f"/{prefix}{service.name}/{method.name}"] = method
    return legacy, sorted(texts)


def _find(legacy: _Legacy, name: str, option: str) -> str:
    if name in legacy.messages:
        return name
    matches = [full for full in legacy.messages if full.rsplit(".", 1)[-1] == name or full.endswith(f".{name}")]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(sorted(legacy.messages)) or "none"
    if matches:
        raise UsageError(f'{option} "{name}" names several messages ({", ".join(matches)}); give the full name')
    raise UsageError(f'{option} "{name}" is not a message of the given .proto files (messages: {known})')


def _annotation(legacy_field: ir.Field) -> str:
    """The pydantic line that declares ``legacy_field`` as the existing API has it."""
    name, proto = legacy_field.name, legacy_field.type
    if legacy_field.kind == "scalar":
        row = next((r for r in typemap.PYTHON_TYPES if r.kind == "scalar" and r.proto == proto), None)
        if row is None:
            row = next((r for r in typemap.PYTHON_TYPES if r.kind == "scalar" and proto in r.overrides), None)
        if row is None:
            return f"{name}: <a type protoreg renders as {proto}>"
        element = row.title
        extra = "" if row.proto == proto else f' = Field(json_schema_extra={{"protoreg": {{"type": "{proto}"}}}})'
    elif legacy_field.kind == "enum":
        element, extra = f"<an Enum whose values are those of {proto}>", ""
    else:
        element = {"google.protobuf.Timestamp": "datetime", "google.protobuf.Duration": "timedelta"}.get(
            proto, f"<a pydantic model for {proto}>")
        extra = ""
    if legacy_field.label == "repeated":
        element = f"list[{element}]"
    elif legacy_field.label == "map":
        key = next((r.title for r in typemap.PYTHON_TYPES if r.proto == legacy_field.key_type), "str")
        element = f"dict[{key}, {element}]"
    return f"{name}: {element}{extra}"


class _Fitter:
    def __init__(self, schema: ModelSchema, legacy: _Legacy) -> None:
        self.schema = schema
        self.legacy = legacy
        self.mismatches: list[Mismatch] = []
        self.message_pairs: dict[str, str] = {}  # model message -> legacy full name
        self.enum_pairs: dict[str, str] = {}
        self.queue: list[tuple[str, str]] = []
        self.kept: list[Kept] = []
        self.reserved_fields: list[tuple[str, str, int]] = []
        self.reservations: list[LegacyReservation] = []
        self.history = History()

    def miss(self, where: str, problem: str, fix: str) -> None:
        self.mismatches.append(Mismatch(where, problem, fix))

    def pair_message(self, model: str, legacy: str, where: str) -> None:
        previous = self.message_pairs.get(model)
        if previous is not None:
            if previous != legacy:
                self.miss(where, f'message "{model}" would stand for both "{previous}" and "{legacy}"',
                          "a pydantic model of its own for each legacy message")
            return
        self.message_pairs[model] = legacy
        self.queue.append((model, legacy))

    def run(self, request: str, response: str) -> None:
        self.pair_message(naming.REQUEST_MESSAGE, request, "--request")
        self.pair_message(naming.RESPONSE_MESSAGE, response, "--response")
        while self.queue:
            self.fit_message(*self.queue.pop(0))
        for model, legacy in self.enum_pairs.items():
            self.fit_enum(model, legacy)

    def optional_in_python(self, message: str, name: str) -> bool:
        cls = self.schema.origins.messages.get(message)
        fields = getattr(cls, "model_fields", None) or {}
        info = fields.get(name)
        return info is not None and split_optional(info.annotation)[1]

    def fit_message(self, model: str, legacy_name: str) -> None:
        spec = self.schema.message(model)
        message = self.legacy.messages[legacy_name]
        assert spec is not None, "paired messages come from the schema"
        short = legacy_name.rsplit(".", 1)[-1]
        if self.legacy.syntax.get(legacy_name) != "proto3":
            self.miss(f"{model} = {legacy_name}", f'"{legacy_name}" is not a proto3 message',
                      "nothing: protoreg adopts proto3 APIs only")
            return
        facts = self.legacy.facts.get(legacy_name, {})
        scope = self.history.scope("message", model)
        matched: set[str] = set()
        for f in spec.fields:
            lf = message.field_by_name(f.name)
            if lf is None:
                continue  # a new field: numbered above every number in use
            matched.add(lf.name)
            where = f"{model}.{f.name} = {short}.{lf.name}"
            if self.fit_field(model, f, lf, facts.get(lf.number, ir.NO_FACTS), where):
                implicit = lf.label == "singular"
                scope.slots[lf.number] = Slot(lf.number, f.name, f.type_key, active=True)
                self.kept.append(Kept(model, f.name, lf.number, legacy_name, implicit))
        lacking = [lf for lf in message.fields if lf.name not in matched]
        self.reserved_fields += [(model, lf.name, lf.number) for lf in lacking]
        numbers = [*message.reserved_numbers, *(ir.ReservedRange(lf.number, lf.number) for lf in lacking)]
        names = sorted({*message.reserved_names, *(lf.name for lf in lacking)})
        if numbers or names:
            self.reservations.append(LegacyReservation("message", model, merge_ranges(numbers), tuple(names)))

    def fit_field(self, model: str, spec: FieldSpec, lf: ir.Field, facts: ir.FieldFacts, where: str) -> bool:
        fix = _annotation(lf)
        if facts.oneof is not None:
            self.miss(where, f'the legacy field is in oneof "{facts.oneof}", which protoreg does not render',
                      "nothing: a model with this field cannot be adopted; leave it out (it is reserved)")
            return False
        if lf.json_name is not None and lf.json_name != _json_name(lf.name):
            self.miss(where, f'the legacy field has the custom JSON name "{lf.json_name}"',
                      "nothing: protoreg renders default JSON names; leave the field out (it is reserved)")
            return False
        if typemap.cardinality(spec.label) != lf.cardinality:
            self.miss(where, f'the model has "{spec.type_text}" but the existing API "{lf.type_text}"', fix)
            return False
        if spec.label == "map" and spec.key_type != lf.key_type:
            self.miss(where, f'the map key is "{spec.key_type}" in the model but "{lf.key_type}" in the existing API',
                      fix)
            return False
        if spec.type.kind != lf.kind:
            self.miss(where, f'the model has the {spec.type.kind} "{spec.type_text}" but the existing API the '
                             f'{lf.kind} "{lf.type_text}"', fix)
            return False
        if lf.kind == "scalar" and spec.type.name != lf.type:
            self.miss(where, f'the model renders "{spec.type_text}" but the existing API has "{lf.type_text}"', fix)
            return False
        if lf.kind == "message":
            if lf.type.startswith("google.protobuf."):
                if spec.type.name != lf.type:
                    self.miss(where, f'the model has "{spec.type_text}" but the existing API "{lf.type_text}"', fix)
                    return False
            elif lf.type not in self.legacy.messages:
                self.miss(where, f'the legacy message "{lf.type}" is not in the given files', "--proto with its file")
                return False
            else:
                self.pair_message(spec.type.name, lf.type, where)
        if lf.kind == "enum":
            previous = self.enum_pairs.setdefault(spec.type.name, lf.type)
            if previous != lf.type:
                self.miss(where, f'enum "{spec.type.name}" would stand for both "{previous}" and "{lf.type}"',
                          "an Enum class of its own for each legacy enum")
                return False
        if lf.label == "singular" and self.optional_in_python(model, spec.name):
            self.miss(where, "the legacy field has implicit presence: 0 and absent are the same on the wire, so "
                             "it can never be None; drop the Optional", fix)
            return False
        return True

    def fit_enum(self, model: str, legacy_name: str) -> None:
        spec = self.schema.enum(model)
        enum = self.legacy.enums.get(legacy_name)
        where = f"enum {model} = {legacy_name}"
        if spec is None or enum is None:
            self.miss(where, f'the legacy enum "{legacy_name}" is not in the given files', "--proto with its file")
            return
        zero = naming.enum_zero_name(model)
        legacy_zero = enum.value_by_number(0)
        if legacy_zero is None or legacy_zero.name != zero:
            have = legacy_zero.name if legacy_zero else "none"
            self.miss(where, f'protoreg names the zero value "{zero}" but the existing API has "{have}"',
                      "an Enum class named so that its zero value is the legacy one, or a str field instead")
            return
        scope = self.history.scope("enum", model)
        matched: set[str] = set()
        for value in spec.values:
            legacy_value = enum.value_by_name(value.name)
            if legacy_value is None:
                continue  # a new value: numbered above every number in use
            matched.add(value.name)
            scope.slots[legacy_value.number] = Slot(legacy_value.number, value.name, "", active=True)
            self.kept.append(Kept(model, value.name, legacy_value.number, legacy_name))
        lacking = [v for v in enum.values if v.number != 0 and v.name not in matched]
        self.reserved_fields += [(model, v.name, v.number) for v in lacking]
        numbers = [*enum.reserved_numbers, *(ir.ReservedRange(v.number, v.number) for v in lacking)]
        names = sorted({*enum.reserved_names, *(v.name for v in lacking)})
        if numbers or names:
            self.reservations.append(LegacyReservation("enum", model, merge_ranges(numbers), tuple(names)))


def plan_adoption(
    schema: ModelSchema, files: list[Path], request: str, response: str, rpc: str | None
) -> Plan:
    """Fit ``schema`` to the existing API; raises :class:`AdoptionMismatchError` listing every mismatch."""
    legacy, texts = read_legacy(files)
    request_name = _find(legacy, request, "--request")
    response_name = _find(legacy, response, "--response")
    if rpc is not None:
        method = legacy.methods.get(rpc)
        if method is None:
            known = ", ".join(sorted(legacy.methods)) or "none"
            raise UsageError(f'--rpc "{rpc}" is not a method of the given .proto files (methods: {known}); '
                             "write it as /package.Service/Method")
        if method.client_streaming or method.server_streaming:
            raise UsageError(f'--rpc "{rpc}" streams; only a unary method can be served as the model\'s Predict')
        if (method.input_type, method.output_type) != (request_name, response_name):
            raise UsageError(f'--rpc "{rpc}" takes "{method.input_type}" and returns "{method.output_type}", not '
                             f'"{request_name}" and "{response_name}"; pass the messages it uses as --request and '
                             "--response")
    reserved_paths = {naming.proto_path(naming.package_name(schema.model, 1), schema.model).split("/", 1)[0]}
    for path, _ in texts:
        if path.split("/", 1)[0] in reserved_paths or path == naming.REGISTRY_PROTO_PATH:
            raise UsageError(f'the existing API\'s file "{path}" would collide with {schema.model}\'s own files in '
                             "proto_versions/; move it into a directory of its own")
    fitter = _Fitter(schema, legacy)
    fitter.run(request_name, response_name)
    if fitter.mismatches:
        raise AdoptionMismatchError(fitter.mismatches)
    adoption = Adoption(
        version=schema.version,
        source=legacy.file_of[request_name],
        request=request_name,
        response=response_name,
        rpc=rpc or "",
        implicit=tuple(sorted((k.scope, k.number) for k in fitter.kept if k.implicit)),
        reserved=tuple(fitter.reservations),
        files=tuple(texts),
    )
    pairs = tuple(sorted(fitter.message_pairs.items())) + tuple(sorted(fitter.enum_pairs.items()))
    return Plan(adoption, fitter.history, tuple(fitter.kept), tuple(fitter.reserved_fields), pairs)
