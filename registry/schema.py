"""Schema extraction: a model's pydantic input and output classes -> a schema tree.

The schema tree is what the author declared, with no field numbers and no database. It is the
input of numbering (``numbering.allocate_numbers``). Everything protoreg cannot express in proto3
is refused here, with an error that names the model, the field path and the problem.

Types come from :mod:`protoreg.registry.typemap`, one row per Python type (``int`` -> ``int64``,
``datetime`` -> ``google.protobuf.Timestamp``, ...; a field may pick another proto type with
``json_schema_extra={"protoreg": {"type": "sint32"}}``). This module handles the structure around
them: ``Enum`` and ``Literal`` of strings -> enum; nested ``BaseModel`` -> message; ``list[X]`` ->
``repeated X`` (``list[list[X]]`` through a wrapper message ``XList``); ``dict[K, X]`` -> ``map``;
``Optional[X]`` -> presence. Every name it gives comes from :mod:`protoreg.registry.naming`.
"""

from __future__ import annotations

import difflib
import enum
import hashlib
import inspect
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Union

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from . import naming, typemap
from .contract import NO_CONTRACT, Contract, read_contract
from .errors import SchemaError

if TYPE_CHECKING:
    from .loader import ModelLike

@dataclass(frozen=True)
class TypeSpec:
    """The element type of a field: a scalar, a message or an enum, by proto name."""

    kind: Literal["scalar", "message", "enum"]
    name: str


@dataclass(frozen=True)
class FieldSpec:
    """One declared field. ``label`` is ``optional`` (singular), ``repeated`` or ``map``."""

    name: str
    type: TypeSpec
    label: Literal["optional", "repeated", "map"]
    required: bool
    description: str = ""
    key_type: str | None = None
    renamed_from: tuple[str, ...] = ()
    contract: Contract = NO_CONTRACT
    """Default, bounds, lengths, pattern, choices and deprecation (:mod:`protoreg.registry.contract`)."""

    @property
    def type_key(self) -> str:
        """The field's wire shape, as the numbering ledger stores it (see ``typemap.type_key``)."""
        return typemap.type_key(self.label, self.type.kind, self.type.name, self.key_type)

    @property
    def type_text(self) -> str:
        """The type as a reader writes it: ``double``, ``repeated Species``, ``map<string, X>``."""
        return typemap.field_type_text(self.label, self.type.name, self.key_type)


@dataclass(frozen=True)
class MessageSpec:
    name: str
    fields: tuple[FieldSpec, ...]
    description: str = ""


@dataclass(frozen=True)
class EnumValueSpec:
    """``name`` is the full proto value name (``SPECIES_SETOSA``); ``value`` the pydantic value."""

    name: str
    value: str


@dataclass(frozen=True)
class EnumSpec:
    name: str
    values: tuple[EnumValueSpec, ...]
    description: str = ""


@dataclass(frozen=True)
class SchemaOrigins:
    """Where a schema's parts come from in Python: the model class, the pydantic class of each
    message, and the ``Enum`` class of each enum (``(message, field)`` for a ``Literal``). Not part
    of the schema (nor of its fingerprint): ``check`` uses it to point findings at source lines."""

    model: type | None = None
    messages: Mapping[str, type] = field(default_factory=dict)
    enums: Mapping[str, type | tuple[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSchema:
    """What a model declares, ready to be numbered. Messages and enums are in a stable order."""

    model: str
    display_name: str
    description: str
    version: str
    messages: tuple[MessageSpec, ...]
    enums: tuple[EnumSpec, ...]
    origins: SchemaOrigins = field(default_factory=SchemaOrigins, compare=False, repr=False)

    def message(self, name: str) -> MessageSpec | None:
        return next((m for m in self.messages if m.name == name), None)

    def enum(self, name: str) -> EnumSpec | None:
        return next((e for e in self.enums if e.name == name), None)

    def renames(self) -> dict[tuple[str, str], frozenset[str]]:
        """``(message, field) -> renamed_from`` of every field that declares one: the same as
        ``compat.engine.renames_of(self.to_dict())``, without building the whole tree as dicts."""
        return {(m.name, f.name): frozenset(f.renamed_from) for m in self.messages for f in m.fields
                if f.renamed_from}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(replace(self, origins=SchemaOrigins()))
        del data["origins"]
        return data

    @property
    def fingerprint(self) -> str:
        """A hash of everything but the version: equal fingerprints mean the same schema."""
        return _hash(self.to_dict())

    @property
    def structure_fingerprint(self) -> str:
        """The fingerprint without field contracts: what a release registered before protoreg
        recorded contracts was fingerprinted with, so registering it again stays a no-op."""
        data = self.to_dict()
        for message in data["messages"]:
            for f in message["fields"]:
                f.pop("contract", None)
        return _hash(data)


def _hash(data: dict[str, Any]) -> str:
    data.pop("version")
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _describe(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return repr(tp).replace("typing.", "")


def _docstring(cls: type) -> str:
    doc = cls.__dict__.get("__doc__")
    return inspect.cleandoc(doc) if isinstance(doc, str) else ""


def strip_annotated(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def split_optional(tp: Any) -> tuple[Any, bool]:
    """``Optional[X]`` -> ``(X, True)``; anything else -> ``(tp, False)``."""
    tp = strip_annotated(tp)
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return strip_annotated(args[0]), True
    return tp, False


FIELD_KEYS = ("type", "renamed_from")
"""The keys a field may set under ``json_schema_extra={"protoreg": {...}}``."""


def _protoreg_extra(info: FieldInfo, fail: Any, path: str) -> dict[str, Any]:
    extra = info.json_schema_extra
    if not isinstance(extra, dict) or "protoreg" not in extra:
        return {}
    value = extra["protoreg"]
    if not isinstance(value, dict):
        raise fail(path, f'json_schema_extra["protoreg"] must be a dict with the keys {", ".join(FIELD_KEYS)}, '
                         f"not {type(value).__name__}")
    for key in value:
        if key not in FIELD_KEYS:
            close = difflib.get_close_matches(str(key), FIELD_KEYS, n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            raise fail(path, f'unknown key "{key}" in json_schema_extra["protoreg"]{hint}; the known keys are '
                             f"{', '.join(FIELD_KEYS)}")
    return value


class _Extractor:
    """Walks the pydantic classes once, naming messages and enums as it meets them."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.class_names: dict[type, str] = {}
        # case-folded name -> (identity, description), to refuse two things with one name
        self.names_taken: dict[str, tuple[object, str]] = {}
        self.messages: dict[str, MessageSpec] = {}
        self.enums: dict[str, EnumSpec] = {}
        self.enum_classes: dict[Any, str] = {}
        self.pending: list[tuple[type[BaseModel], str, str]] = []
        # (message, field) edges that force a value: a cycle of these has no finite value
        self.required_edges: dict[str, set[str]] = {}

    def fail(self, path: str, problem: str) -> SchemaError:
        return SchemaError(self.model, path, problem)

    def claim(self, name: str, origin: str, path: str, identity: object = None) -> None:
        folded = name.lower()
        identity = origin if identity is None else identity
        previous = self.names_taken.get(folded)
        if previous is not None and previous[0] != identity:
            raise self.fail(
                path,
                f'the name "{name}" for {origin} collides with {previous[1]}; '
                "rename one of the classes",
            )
        self.names_taken[folded] = (identity, origin)

    def message_for(self, cls: type[BaseModel], path: str) -> str:
        if cls in self.class_names:
            return self.class_names[cls]
        name = cls.__name__
        if not naming.MESSAGE_NAME.fullmatch(name):
            raise self.fail(
                path, f'class name "{name}" is not a PascalCase proto message name; rename the class'
            )
        if name in naming.RESERVED_MESSAGE_NAMES:
            raise self.fail(
                path, f'class name "{name}" is reserved for the generated RPC messages; rename it'
            )
        self.claim(name, f"class {cls.__module__}.{cls.__qualname__}", path, cls)
        self.class_names[cls] = name
        self.pending.append((cls, name, path))
        return name

    def enum_for(self, key: Any, name: str, values: list[tuple[str, str]], description: str,
                 origin: str, path: str) -> str:
        if key in self.enum_classes:
            return self.enum_classes[key]
        if not naming.MESSAGE_NAME.fullmatch(name):
            raise self.fail(path, f'enum name "{name}" is not a PascalCase proto enum name; rename it')
        self.claim(name, origin, path, key)
        zero = naming.enum_zero_name(name)
        specs: list[EnumValueSpec] = []
        seen: dict[str, str] = {}
        for value_label, value in values:
            proto_name = naming.enum_value_name(name, value_label)
            if not naming.upper_snake(value_label) or not naming.IDENTIFIER.fullmatch(proto_name):
                raise self.fail(
                    path, f'enum value "{value_label}" of "{name}" cannot become a proto identifier'
                )
            if proto_name == zero:
                raise self.fail(
                    path,
                    f'enum value "{value_label}" of "{name}" would clash with "{zero}", '
                    "which protoreg reserves for the zero value",
                )
            if proto_name in seen:
                raise self.fail(
                    path,
                    f'enum values "{seen[proto_name]}" and "{value_label}" of "{name}" both become '
                    f'"{proto_name}"; make them differ in more than case or punctuation',
                )
            seen[proto_name] = value_label
            specs.append(EnumValueSpec(proto_name, value))
        if not specs:
            raise self.fail(path, f'enum "{name}" has no values')
        self.enum_classes[key] = name
        self.enums[name] = EnumSpec(name, tuple(specs), description)
        return name

    def element(self, tp: Any, path: str, override: str | None, owner: str) -> TypeSpec:
        """The proto element type of ``tp`` (no list, dict or Optional around it)."""
        tp = strip_annotated(tp)
        origin = typing.get_origin(tp)
        if origin in (list, dict) or split_optional(tp)[1]:
            raise AssertionError("containers are handled by the caller")
        row = typemap.python_type(tp)
        if row is not None:
            if row.kind == "message":
                return TypeSpec("message", row.proto)
            return self.scalar(row.proto, override, row.overrides, path)
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            values = [(label, label) for label, _ in typemap.enum_members(tp)]
            name = self.enum_for(
                tp, tp.__name__, values, _docstring(tp), f"enum {tp.__module__}.{tp.__qualname__}", path
            )
            return TypeSpec("enum", name)
        if origin is Literal:
            args = typing.get_args(tp)
            if not args or not all(isinstance(a, str) for a in args):
                raise self.fail(path, f"Literal{list(args)!r} is not supported; only Literals of strings become enums")
            field_name = path.rsplit(".", 1)[-1]
            name = naming.literal_enum_name(owner, field_name)
            values = [(a, a) for a in dict.fromkeys(args)]
            return TypeSpec("enum", self.enum_for(("literal", owner, field_name), name, values, "",
                                                  f"Literal of {path}", path))
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return TypeSpec("message", self.message_for(tp, path))
        raise self.fail(
            path,
            f'type "{_describe(tp)}" is not supported; use {typemap.supported_types_text()}',
        )

    def scalar(self, default: str, override: str | None, allowed: tuple[str, ...], path: str) -> TypeSpec:
        if override is None:
            return TypeSpec("scalar", default)
        if override not in allowed:
            raise self.fail(
                path,
                f'protoreg type override "{override}" does not fit a {default} field; '
                f"choose one of {', '.join(allowed)}",
            )
        return TypeSpec("scalar", override)

    def wrapper(self, inner: Any, path: str, override: str | None, owner: str) -> TypeSpec:
        """A message that holds a list or a map, for nested containers proto cannot nest."""
        inner = strip_annotated(inner)
        origin = typing.get_origin(inner)
        if origin is list:
            (item,) = typing.get_args(inner) or (None,)
            element = self.container_element(item, path, override, owner)
            name = naming.list_wrapper_name(naming.type_title(element.kind, element.name))
            spec = FieldSpec(naming.LIST_WRAPPER_FIELD, element, "repeated", False, "")
            description = f"Generated wrapper: one list of {element.name}."
        else:
            key, value = _dict_args(inner, self, path)
            element = self.container_element(value, path, override, owner)
            name = naming.map_wrapper_name(key, naming.type_title(element.kind, element.name))
            spec = FieldSpec(naming.MAP_WRAPPER_FIELD, element, "map", False, "", key_type=key)
            description = f"Generated wrapper: one map from {key} to {element.name}."
        if name not in self.messages:
            self.claim(name, f"generated wrapper {name}", path)
            self.messages[name] = MessageSpec(name, (spec,), description)
        return TypeSpec("message", name)

    def container_element(self, tp: Any, path: str, override: str | None, owner: str) -> TypeSpec:
        """The element of a list or a map value: may itself be a container (-> wrapper)."""
        if tp is None:
            raise self.fail(path, "a bare list or dict needs an element type, e.g. list[float]")
        tp, optional = split_optional(tp)
        if optional:
            raise self.fail(
                path,
                "a list or map of Optional values cannot be expressed in proto3; drop the Optional",
            )
        if typing.get_origin(tp) in (list, dict):
            return self.wrapper(tp, path, override, owner)
        return self.element(tp, path, override, owner)

    def field(self, owner: str, name: str, info: FieldInfo, path: str) -> FieldSpec:
        if not naming.FIELD_NAME.fullmatch(name):
            raise self.fail(
                path,
                f'field name "{name}" is not a lower_snake_case proto field name; rename it '
                '(an alias keeps the JSON name if you need one)',
            )
        extra = _protoreg_extra(info, self.fail, path)
        override = extra.get("type")
        renamed = extra.get("renamed_from", ())
        if not isinstance(renamed, (str, list, tuple)) or not all(isinstance(r, str) for r in renamed):
            raise self.fail(path, f'renamed_from must be a field name or a list of field names, not {renamed!r}; '
                                  'write e.g. {"renamed_from": "old_name"}')
        renamed_from = (renamed,) if isinstance(renamed, str) else tuple(renamed)
        tp, optional = split_optional(info.annotation)
        required = info.is_required() and not optional
        description = info.description or ""
        origin = typing.get_origin(tp)
        if origin is list or origin is dict:
            if optional:
                raise self.fail(
                    path,
                    "an Optional list or dict cannot be told apart from an empty one on the wire; "
                    "use a default of [] or {} instead of None",
                )
            if origin is list:
                (item,) = typing.get_args(tp) or (None,)
                element = self.container_element(item, path, override, owner)
                # On the wire no items and no field are one thing: a list is never required.
                contract = read_contract(info, required=info.is_required(), choices=_choices(item))
                return FieldSpec(name, element, "repeated", False, description, None, renamed_from, contract)
            key, value = _dict_args(tp, self, path)
            element = self.container_element(value, path, override, owner)
            contract = read_contract(info, required=info.is_required())
            return FieldSpec(name, element, "map", False, description, key, renamed_from, contract)
        element = self.element(tp, path, override, owner)
        if element.kind == "message" and required and not optional:
            self.required_edges.setdefault(owner, set()).add(element.name)
        contract = read_contract(info, required=info.is_required(), choices=_choices(tp))
        return FieldSpec(name, element, "optional", required, description, None, renamed_from, contract)

    def build_message(self, cls: type[BaseModel], name: str, path: str) -> None:
        fields: list[FieldSpec] = []
        folded: dict[str, str] = {}
        for field_name, info in cls.model_fields.items():
            field_path = f"{path}.{field_name}"
            key = field_name.replace("_", "").lower()
            if key in folded:
                raise self.fail(
                    field_path,
                    f'field "{field_name}" collides with "{folded[key]}" once case and underscores '
                    "are folded (their JSON names would clash); rename one",
                )
            folded[key] = field_name
            fields.append(self.field(name, field_name, info, field_path))
        self.messages[name] = MessageSpec(name, tuple(fields), _docstring(cls))

    def drain(self) -> None:
        while self.pending:
            cls, name, path = self.pending.pop(0)
            self.build_message(cls, name, path)

    def check_cycles(self) -> None:
        """Refuse loops of required message fields: no finite value could satisfy them."""
        state: dict[str, int] = {}

        def visit(node: str, trail: list[str]) -> None:
            state[node] = 1
            for nxt in sorted(self.required_edges.get(node, ())):
                if state.get(nxt) == 1:
                    loop = " -> ".join(trail[trail.index(nxt):] + [nxt]) if nxt in trail else nxt
                    raise self.fail(
                        nxt,
                        f"required fields form a loop ({loop}) that no finite message can satisfy; "
                        "make one of them Optional or a list",
                    )
                if state.get(nxt) is None:
                    visit(nxt, trail + [nxt])
            state[node] = 2

        for node in sorted(self.required_edges):
            if state.get(node) is None:
                visit(node, [node])


def _choices(tp: Any) -> tuple[str, ...]:
    """The values a ``Literal`` or an ``Enum`` accepts, as pydantic values (``()`` for other types)."""
    tp = strip_annotated(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tuple(str(m.value) for m in tp)
    if typing.get_origin(tp) is Literal:
        return tuple(str(a) for a in dict.fromkeys(typing.get_args(tp)))
    return ()


def _dict_args(tp: Any, extractor: _Extractor, path: str) -> tuple[str, Any]:
    args = typing.get_args(tp)
    if len(args) != 2:
        raise extractor.fail(path, "a bare dict needs key and value types, e.g. dict[str, float]")
    key = strip_annotated(args[0])
    key_type = typemap.map_key_type(key)
    if key_type is None:
        raise extractor.fail(
            path, f'map key type "{_describe(key)}" is not supported; use {typemap.map_key_types_text()}'
        )
    return key_type, args[1]


def extract_schema(model: ModelLike | type[ModelLike]) -> ModelSchema:
    """Read a model class (or instance) and return its schema tree.

    ``model`` is anything with ``qualified_name``, ``display_name``, ``description``,
    ``version``, ``input_schema`` and ``output_schema`` (see ``protoreg.registry.loader.ModelLike``).
    """
    from .limits import check_schema_limits
    from .loader import model_metadata  # here to keep schema free of entry-point machinery

    meta = model_metadata(model)
    name = meta.qualified_name
    if not naming.MODEL_NAME.fullmatch(name):
        raise SchemaError(
            name, "", f'qualified_name "{name}" must be lower_snake_case (it becomes the proto package)'
        )
    extractor = _Extractor(name)
    for root, message_name, label in (
        (meta.input_schema, naming.REQUEST_MESSAGE, "input_schema"),
        (meta.output_schema, naming.RESPONSE_MESSAGE, "output_schema"),
    ):
        if not (isinstance(root, type) and issubclass(root, BaseModel)):
            raise SchemaError(name, label, f"must be a pydantic BaseModel class, not {_describe(root)}")
        extractor.claim(message_name, f"the {label} root", label)
        if root not in extractor.class_names:
            extractor.class_names[root] = message_name
        extractor.build_message(root, message_name, message_name)
        extractor.drain()
    extractor.check_cycles()
    # Stable order: request, response, then messages and enums in the order they were met.
    ordered = [extractor.messages[naming.REQUEST_MESSAGE], extractor.messages[naming.RESPONSE_MESSAGE]]
    ordered += [m for n, m in extractor.messages.items() if n not in (naming.REQUEST_MESSAGE, naming.RESPONSE_MESSAGE)]
    origins = SchemaOrigins(
        model=model if isinstance(model, type) else type(model),
        messages={name: cls for cls, name in extractor.class_names.items()},
        enums={name: key if isinstance(key, type) else (key[1], key[2])
               for key, name in extractor.enum_classes.items()},
    )
    schema = ModelSchema(
        model=name,
        display_name=meta.display_name,
        description=meta.description,
        version=meta.version,
        messages=tuple(ordered),
        enums=tuple(extractor.enums.values()),
        origins=origins,
    )
    check_schema_limits(schema)  # lengths and package-scope collisions, the same on every backend
    return schema
