"""Converting between protobuf messages and a model's pydantic classes, compiled once.

A :class:`MessageCodec` is built at start-up for each (pydantic class, message descriptor) pair
by walking the pydantic annotations and the descriptor side by side; each field gets a small plan
(cardinality, element codec, what absence means). A call then only runs the plans: nothing is
rediscovered per request.

Presence follows the rendering: every singular field protoreg numbers has explicit presence, so
``0.0``, ``""`` and ``false`` are values. A field that is absent on the wire is left out of the data
handed to pydantic, which then applies the field's default, or reports the missing field by name
when it has none (``Optional[X]`` without a default becomes ``None``). A field with implicit
presence (kept from an API adopted with ``protoreg adopt``) cannot be absent: proto3 does not send
its zero value, so absent *is* ``0``, ``""`` or ``false``, and that zero value is what pydantic gets. An enum set to its
``*_UNSPECIFIED`` zero value counts as absent. Proto cannot tell an empty list or map from an
absent one, so an empty one is absent when the pydantic field has a default and empty otherwise. Enum values map
between pydantic values and proto value names through the schema tree (``protoreg.registry.schema``),
the same mapping the registry numbered. Scalars and well-known types convert with the codec of
their row in the type mapping (``registry/typemap.py``).
"""

from __future__ import annotations

import enum
import typing
from dataclasses import dataclass
from typing import Any, Literal

from google.protobuf import descriptor
from google.protobuf.message import Message
from pydantic import BaseModel, ValidationError

from protoreg.registry import typemap
from protoreg.registry.naming import LIST_WRAPPER_FIELD, MAP_WRAPPER_FIELD
from protoreg.registry.schema import ModelSchema, split_optional, strip_annotated
from protoreg.registry.typemap import InvalidValue

FD = descriptor.FieldDescriptor


class BindError(Exception):
    """The pydantic classes and the rendered descriptors do not fit together."""


@dataclass(frozen=True)
class Violation:
    """One bad field of a request: a dotted path (``items[2].x``) and what was wrong."""

    field: str
    description: str


class RequestError(Exception):
    """A request that cannot become the model's input; carries per-field violations."""

    def __init__(self, message: str, violations: tuple[Violation, ...] = ()) -> None:
        super().__init__(message)
        self.violations = violations


_ABSENT = object()  # an enum's UNSPECIFIED value: treated as if the field were not sent


# -- element codecs: one value of a field (a scalar, an enum value, or a message) ------------


class _Enum:
    """Proto number <-> pydantic value, through the schema's value-name mapping."""

    message = False

    def __init__(self, enum_type: descriptor.EnumDescriptor, python_values: dict[str, Any],
                 zero: str) -> None:
        self.full_name = enum_type.full_name
        self.by_number: dict[int, Any] = {}
        self.by_value: dict[Any, int] = {}
        for name, value in python_values.items():
            number = enum_type.values_by_name[name].number
            self.by_number[number] = value
            self.by_value[value] = number
        self.zero = enum_type.values_by_name[zero].number if zero in enum_type.values_by_name else 0

    def decode(self, value: int) -> Any:
        if value in self.by_number:
            return self.by_number[value]
        if value == self.zero:
            return _ABSENT
        raise RequestError(f'{value} is not a value of enum "{self.full_name}" this release knows')

    def encode(self, value: Any) -> int:
        try:
            return self.by_value[value]
        except KeyError:
            raise ValueError(f'{value!r} has no value in enum "{self.full_name}"') from None


@dataclass
class _FieldPlan:
    name: str
    number: int
    cardinality: Literal["single", "repeated", "map"]
    element: Any  # an element codec
    none_when_absent: bool  # Optional[X] without a default: absence means None
    empty_is_absent: bool = False  # an empty list/map of a field with a default: use the default
    implicit: bool = False  # implicit presence (an adopted API): absent on the wire is the zero value


class MessageCodec:
    """A pydantic class <-> a protobuf message type, as a list of compiled field plans."""

    message = True

    def __init__(self, full_name: str) -> None:
        self.full_name = full_name
        self.plans: list[_FieldPlan] = []

    def decode(self, msg: Any) -> dict[str, Any]:
        """A message -> the dict pydantic validates (absent fields left out)."""
        data: dict[str, Any] = {}
        for plan in self.plans:
            try:
                self._decode_field(plan, msg, data)
            except (RequestError, InvalidValue) as error:  # name the field, under its parent's path
                inner = (error.violations if isinstance(error, RequestError) else ()) or (Violation("", str(error)),)
                raise RequestError(
                    str(error),
                    tuple(Violation(_join(plan.name, v.field), v.description) for v in inner),
                ) from error
        return data

    def _decode_field(self, plan: _FieldPlan, msg: Any, data: dict[str, Any]) -> None:
        if plan.cardinality == "single":
            value: Any = _ABSENT
            if plan.implicit or msg.HasField(plan.name):
                value = plan.element.decode(getattr(msg, plan.name))
            if value is _ABSENT:
                if plan.none_when_absent:
                    data[plan.name] = None
                return
            data[plan.name] = value
        else:
            # proto cannot tell an empty list or map from an absent one: both are "absent",
            # which means the pydantic default when there is one and empty otherwise
            values = getattr(msg, plan.name)
            if not values and plan.empty_is_absent:
                return
            if plan.cardinality == "repeated":
                data[plan.name] = [_element(plan, item) for item in values]
            else:
                data[plan.name] = {k: _element(plan, v) for k, v in values.items()}

    def fill(self, target: Any, obj: Any) -> None:
        """Write a pydantic object (or a dict) into ``target``; ``None`` fields stay absent."""
        for plan in self.plans:
            if isinstance(obj, dict):
                value = obj.get(plan.name)
            else:
                value = getattr(obj, plan.name, None)
            if value is None:
                continue
            element = plan.element
            if plan.cardinality == "single":
                if element.message:
                    sub = getattr(target, plan.name)
                    sub.SetInParent()
                    element.fill(sub, value)
                else:
                    setattr(target, plan.name, element.encode(value))
            elif plan.cardinality == "repeated":
                items = getattr(target, plan.name)
                if element.message:
                    for item in value:
                        element.fill(items.add(), item)
                else:
                    items.extend(element.encode(item) for item in value)
            else:
                entries = getattr(target, plan.name)
                for key, item in value.items():
                    if element.message:
                        element.fill(entries[key], item)
                    else:
                        entries[key] = element.encode(item)


def _join(parent: str, child: str) -> str:
    if not child:
        return parent
    return f"{parent}{child}" if child.startswith("[") else f"{parent}.{child}"


def _element(plan: _FieldPlan, value: Any) -> Any:
    decoded = plan.element.decode(value)
    if decoded is _ABSENT:
        raise RequestError("an UNSPECIFIED enum value cannot be an item of a list or map")
    return decoded


class _Wrapper:
    """A generated ``XList`` / ``XMap`` message standing for a nested list or dict."""

    message = True

    def __init__(self, inner: MessageCodec, field_name: str) -> None:
        self.inner = inner
        self.field_name = field_name

    def decode(self, msg: Any) -> Any:
        return self.inner.decode(msg)[self.field_name]

    def fill(self, target: Any, value: Any) -> None:
        self.inner.fill(target, {self.field_name: value})


# -- compiling ------------------------------------------------------------------------------


class CodecBuilder:
    """Builds codecs for one model release; caches them by (class, message type)."""

    def __init__(self, schema: ModelSchema, package: str) -> None:
        self.schema = schema
        self.package = package
        self.cache: dict[tuple[Any, str], MessageCodec] = {}

    def message(self, cls: type[BaseModel], msg_type: descriptor.Descriptor) -> MessageCodec:
        key = (cls, msg_type.full_name)
        if key in self.cache:
            return self.cache[key]
        codec = MessageCodec(msg_type.full_name)
        self.cache[key] = codec  # before the fields, so recursive models terminate
        for name, info in cls.model_fields.items():
            fd = msg_type.fields_by_name.get(name)
            if fd is None:
                raise BindError(f'message "{msg_type.full_name}" has no field "{name}"')
            tp, optional = split_optional(info.annotation)
            origin = typing.get_origin(tp)
            path = f"{msg_type.full_name}.{name}"
            if origin is list:
                if not _is_repeated(fd) or _is_map(fd):
                    raise BindError(f'"{path}" is a list in pydantic but not a repeated field')
                (item,) = typing.get_args(tp)
                element = self.element(item, fd, path)
                cardinality: Literal["single", "repeated", "map"] = "repeated"
            elif origin is dict:
                if not _is_map(fd):
                    raise BindError(f'"{path}" is a dict in pydantic but not a map field')
                value_fd = fd.message_type.fields_by_name["value"]
                element = self.element(typing.get_args(tp)[1], value_fd, path)
                cardinality = "map"
            else:
                if _is_repeated(fd):
                    raise BindError(f'"{path}" is repeated in the proto but not a list in pydantic')
                element = self.element(tp, fd, path)
                cardinality = "single"
            codec.plans.append(_FieldPlan(name, fd.number, cardinality, element,
                                          optional and info.is_required(), not info.is_required(),
                                          cardinality == "single" and not fd.has_presence))
        return codec

    def element(self, tp: Any, fd: descriptor.FieldDescriptor, path: str) -> Any:
        tp, _ = split_optional(strip_annotated(tp))
        origin = typing.get_origin(tp)
        if origin in (list, dict):
            wrapper = fd.message_type
            if wrapper is None:
                raise BindError(f'"{path}" nests a container but the proto field is not a wrapper message')
            field_name = LIST_WRAPPER_FIELD if origin is list else MAP_WRAPPER_FIELD
            inner_fd = wrapper.fields_by_name.get(field_name)
            if inner_fd is None:
                raise BindError(f'wrapper "{wrapper.full_name}" has no field "{field_name}"')
            inner = MessageCodec(wrapper.full_name)
            if origin is list:
                (item,) = typing.get_args(tp)
                inner.plans.append(_FieldPlan(field_name, inner_fd.number, "repeated",
                                              self.element(item, inner_fd, path), False))
            else:
                value_fd = inner_fd.message_type.fields_by_name["value"]
                inner.plans.append(_FieldPlan(field_name, inner_fd.number, "map",
                                              self.element(typing.get_args(tp)[1], value_fd, path), False))
            return _Wrapper(inner, field_name)
        row = typemap.python_type(tp)
        if row is not None and row.kind == "message":
            _expect_message(fd, row.proto, path)
            return row.codec
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if fd.message_type is None:
                raise BindError(f'"{path}" is a model in pydantic but not a message field')
            return self.message(tp, fd.message_type)
        if (isinstance(tp, type) and issubclass(tp, enum.Enum)) or origin is Literal:
            return self.enum(tp, fd, path)
        if fd.type in (FD.TYPE_MESSAGE, FD.TYPE_ENUM, FD.TYPE_GROUP):
            raise BindError(f'"{path}" is a scalar in pydantic but not in the proto')
        return row.codec if row is not None else typemap.IDENTITY

    def enum(self, tp: Any, fd: descriptor.FieldDescriptor, path: str) -> _Enum:
        enum_type = fd.enum_type
        if enum_type is None:
            raise BindError(f'"{path}" is an enum in pydantic but not in the proto')
        name = enum_type.full_name.removeprefix(f"{self.package}.")
        spec = self.schema.enum(name)
        if spec is None:
            raise BindError(f'enum "{name}" of "{path}" is not in the model schema')
        python_values: dict[str, Any] = {}
        for value in spec.values:
            if value.name not in enum_type.values_by_name:
                raise BindError(f'enum "{enum_type.full_name}" has no value "{value.name}"')
            python_values[value.name] = _python_enum_value(tp, value.value)
        zero = next((v.name for v in enum_type.values if v.number == 0), "")
        return _Enum(enum_type, python_values, zero)


def _python_enum_value(tp: Any, label: str) -> Any:
    """The pydantic value a schema enum label stands for (labels: ``typemap.enum_members``)."""
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return dict(typemap.enum_members(tp))[label]
    return label  # a Literal of strings


def _is_repeated(fd: descriptor.FieldDescriptor) -> bool:
    return fd.is_repeated


def _is_map(fd: descriptor.FieldDescriptor) -> bool:
    return (
        _is_repeated(fd)
        and fd.message_type is not None
        and fd.message_type.GetOptions().map_entry
    )


def _expect_message(fd: descriptor.FieldDescriptor, full_name: str, path: str) -> None:
    if fd.message_type is None or fd.message_type.full_name != full_name:
        raise BindError(f'"{path}" should be a {full_name} in the proto')


# -- the model's request and response ------------------------------------------------------


def _violations(error: ValidationError) -> tuple[Violation, ...]:
    found = []
    for item in error.errors():
        path = ""
        for part in item["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        found.append(Violation(path or "(request)", item["msg"]))
    return tuple(found)


@dataclass(frozen=True)
class ModelCodec:
    """Request bytes -> pydantic input, pydantic output -> response message, for one release."""

    input_schema: type[BaseModel]
    output_schema: type[BaseModel]
    request_class: type[Message]
    response_class: type[Message]
    request: MessageCodec
    response: MessageCodec

    def parse(self, data: bytes) -> Message:
        try:
            return self.request_class.FromString(data)
        except Exception as error:  # DecodeError, or RuntimeError from some runtimes
            raise RequestError(
                f'request bytes are not a valid "{self.request.full_name}" message ({error})'
            ) from error

    def to_input(self, msg: Message) -> BaseModel:
        try:
            data = self.request.decode(msg)
            return self.input_schema.model_validate(data, by_name=True)
        except ValidationError as error:
            violations = _violations(error)
        except RequestError as error:
            violations = error.violations
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
        raise RequestError(f"invalid request: {summary}", violations)

    def to_response(self, output: Any) -> Message:
        if not isinstance(output, self.output_schema):
            data = output.model_dump() if isinstance(output, BaseModel) else output
            output = self.output_schema.model_validate(data)
        response = self.response_class()
        self.response.fill(response, output)
        return response

