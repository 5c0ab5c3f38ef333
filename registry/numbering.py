"""Numbering: a model's history plus a new schema -> a numbered package (append-only).

This module is pure: it reads a :class:`History` (every number ever allocated in every message
and enum of one model, with the name and wire type it last had) and returns the numbered IR
package of the new release, the updated history and a list of changes. ``store`` persists the
result; nothing here touches a database.

The rules (DESIGN.md, invariants 1-5):

* a field keeps its number for as long as its name and wire-compatible type stay;
* an explicit rename (``renamed_from``) keeps the number and reserves the old name;
* a field that comes back after a removal gets its old number back if its type is compatible
  and the number is free, otherwise a fresh one;
* a wire-incompatible type change gets a fresh number; the old one becomes reserved;
* every number and name ever used and not in use now is reserved in the rendering;
* fresh numbers are ``max(ever allocated) + 1``, skipping 19000-19999, never past 536,870,911.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from . import ir, naming, typemap
from .contract import NO_CONTRACT
from .errors import NumberingError
from .naming import (
    PREDICT_METHOD,
    PREDICT_STREAM_METHOD,
    REQUEST_MESSAGE,
    RESPONSE_MESSAGE,
    STREAM_REQUEST_FIELD,
    STREAM_REQUEST_MESSAGE,
    STREAM_RESPONSE_FIELD,
    STREAM_RESPONSE_MESSAGE,
)
from .schema import FieldSpec, ModelSchema


@dataclass
class Slot:
    """One number ever allocated in a message or enum, with its latest name and type."""

    number: int
    name: str
    type_key: str = ""
    names: list[str] = field(default_factory=list)
    active: bool = False

    def __post_init__(self) -> None:
        if self.name not in self.names:
            self.names.append(self.name)


@dataclass
class Scope:
    """The numbering history of one message (``kind == "message"``) or enum."""

    kind: str
    name: str
    slots: dict[int, Slot] = field(default_factory=dict)

    @property
    def next_number(self) -> int:
        return max(self.slots, default=0) + 1


@dataclass
class History:
    """Every allocation of one model, keyed by (kind, message or enum name)."""

    scopes: dict[tuple[str, str], Scope] = field(default_factory=dict)

    def scope(self, kind: str, name: str) -> Scope:
        return self.scopes.setdefault((kind, name), Scope(kind, name))


@dataclass(frozen=True)
class Change:
    """One thing that changed in the numbering, for ``history`` and ``--dry-run``."""

    action: str  # added, removed, renamed, retyped, renumbered, restored
    scope: str
    name: str
    number: int
    detail: str = ""

    def describe(self) -> str:
        text = {
            "added": f"added {self.scope}.{self.name} = {self.number}",
            "removed": f"removed {self.scope}.{self.name} (number {self.number} reserved)",
            "renamed": f"renamed {self.scope}.{self.detail} to {self.name} (keeps {self.number})",
            "retyped": f"changed type of {self.scope}.{self.name} {self.detail} (keeps {self.number})",
            "renumbered": f"changed type of {self.scope}.{self.name} {self.detail}: new number {self.number}",
            "restored": f"restored {self.scope}.{self.name} = {self.number}",
        }[self.action]
        return text


@dataclass(frozen=True)
class Numbered:
    package: ir.Package
    history: History
    changes: tuple[Change, ...]


def _fresh_number(scope: Scope, taken: set[int], floor: int = 0) -> int:
    number = max([*scope.slots, *taken, floor], default=0) + 1
    if number in ir.RESERVED_FIELD_NUMBERS and scope.kind == "message":
        number = ir.RESERVED_FIELD_NUMBERS.stop
    limit = ir.FIELD_NUMBER_MAX if scope.kind == "message" else 2**31 - 1
    if number > limit:
        raise NumberingError(
            f'"{scope.name}" has used every number up to {limit}; protobuf allows no more. '
            "Start a new message (or model) instead of adding more fields here"
        )
    return number


def allocate_numbers(
    history: History, schema: ModelSchema, floors: Mapping[tuple[str, str], int] | None = None
) -> Numbered:
    """Number ``schema`` against ``history``. Returns a new history; the input is not changed.

    ``floors`` (``(kind, name)`` -> number) keeps fresh numbers of a scope above numbers that
    are not in the ledger but taken all the same: those an adopted API reserved (``protoreg adopt``).
    """
    floors = floors or {}
    history = _copy(history)
    changes: list[Change] = []
    messages: list[ir.Message] = []
    for message in schema.messages:
        scope = history.scope("message", message.name)
        by_name_active = {s.name: s for s in scope.slots.values() if s.active}
        used: dict[int, FieldSpec] = {}
        names_in_schema = {f.name for f in message.fields}
        for spec in message.fields:
            key = spec.type_key
            slot: Slot | None = None
            action, detail = "added", ""
            # 1. the same field, still here under the same name
            current = by_name_active.get(spec.name)
            if current is not None:
                change = f'from "{typemap.type_key_text(current.type_key)}" to "{typemap.type_key_text(key)}"'
                if typemap.type_key_compatible(current.type_key, key):
                    slot = current
                    action, detail = ("retyped", change) if current.type_key != key else ("", "")
                else:
                    action, detail = "renumbered", change
            # 2. an explicit rename of a field that was active and is gone under its old name
            if slot is None and current is None:
                for old in spec.renamed_from:
                    candidate = by_name_active.get(old)
                    if (
                        candidate is not None
                        and old not in names_in_schema
                        and candidate.number not in used
                        and typemap.type_key_compatible(candidate.type_key, key)
                    ):
                        slot, action, detail = candidate, "renamed", old
                        break
            # 3. a field coming back: its old number, if the type fits and nobody holds it
            if slot is None:
                for candidate in sorted(scope.slots.values(), key=lambda s: -s.number):
                    if (
                        not candidate.active
                        and candidate.name == spec.name
                        and candidate.number not in used
                        and typemap.type_key_compatible(candidate.type_key, key)
                    ):
                        slot = candidate
                        action = "restored" if action == "added" else action
                        break
            if slot is None:
                number = _fresh_number(scope, set(used), floors.get(("message", message.name), 0))
                slot = Slot(number, spec.name, key)
                scope.slots[number] = slot
            if slot.name != spec.name:
                slot.name = spec.name
                if spec.name not in slot.names:
                    slot.names.append(spec.name)
            slot.type_key = key
            used[slot.number] = spec
            if action:
                changes.append(Change(action, message.name, spec.name, slot.number, detail))
        for slot in scope.slots.values():
            if slot.active and slot.number not in used:
                changes.append(Change("removed", message.name, slot.name, slot.number))
            slot.active = slot.number in used
        messages.append(_ir_message(message.name, message.description, scope, used))
    # Messages that disappeared entirely: their slots stay, inactive, for a later comeback.
    present = {m.name for m in schema.messages}
    for (kind, name), scope in history.scopes.items():
        if kind == "message" and name not in present:
            for slot in scope.slots.values():
                if slot.active:
                    changes.append(Change("removed", name, slot.name, slot.number))
                slot.active = False

    enums: list[ir.Enum] = []
    for enum in schema.enums:
        scope = history.scope("enum", enum.name)
        zero = naming.enum_zero_name(enum.name)
        by_name = {s.name: s for s in scope.slots.values()}
        used_values: dict[int, tuple[str, str]] = {}
        for value in enum.values:
            slot = by_name.get(value.name)
            if slot is None or slot.number in used_values:
                slot = Slot(_fresh_number(scope, set(used_values), floors.get(("enum", enum.name), 0)), value.name)
                scope.slots[slot.number] = slot
                changes.append(Change("added", enum.name, value.name, slot.number))
            elif not slot.active:
                changes.append(Change("restored", enum.name, value.name, slot.number))
            used_values[slot.number] = (value.name, value.value)
        for slot in scope.slots.values():
            if slot.active and slot.number not in used_values:
                changes.append(Change("removed", enum.name, slot.name, slot.number))
            slot.active = slot.number in used_values
        enums.append(_ir_enum(enum.name, enum.description, scope, used_values, zero))
    present_enums = {e.name for e in schema.enums}
    for (kind, name), scope in history.scopes.items():
        if kind == "enum" and name not in present_enums:
            for slot in scope.slots.values():
                if slot.active:
                    changes.append(Change("removed", name, slot.name, slot.number))
                slot.active = False

    package = build_package(schema, tuple(messages), tuple(enums))
    return Numbered(package, history, tuple(changes))


def _ir_message(name: str, description: str, scope: Scope, used: dict[int, FieldSpec]) -> ir.Message:
    fields = tuple(
        ir.Field(
            name=spec.name,
            number=number,
            type=spec.type.name,
            kind=spec.type.kind,
            label=spec.label,
            key_type=spec.key_type,
            required=spec.required,
            description=spec.description,
            contract=spec.contract,
        )
        for number, spec in used.items()
    )
    active_names = {spec.name for spec in used.values()}
    reserved_numbers = [n for n in scope.slots if n not in used]
    reserved_names = sorted(
        {n for slot in scope.slots.values() for n in slot.names if n not in active_names}
    )
    return ir.Message(
        name=name,
        fields=fields,
        description=description,
        reserved_numbers=ir.compress_ranges(reserved_numbers),
        reserved_names=tuple(reserved_names),
    )


def _ir_enum(
    name: str, description: str, scope: Scope, used: dict[int, tuple[str, str]], zero: str
) -> ir.Enum:
    values = [ir.EnumValue(zero, 0, "", "Unset: the sender did not choose a value.")]
    values += [ir.EnumValue(n, number, v) for number, (n, v) in used.items()]
    active = {n for n, _ in used.values()}
    return ir.Enum(
        name=name,
        values=tuple(values),
        description=description,
        reserved_numbers=ir.compress_ranges(n for n in scope.slots if n not in used),
        reserved_names=tuple(sorted({s.name for s in scope.slots.values() if s.name not in active})),
    )


def build_package(
    schema: ModelSchema, messages: tuple[ir.Message, ...], enums: tuple[ir.Enum, ...]
) -> ir.Package:
    """Wrap numbered messages and enums into the package of the schema's major version."""
    major = int(schema.version.split(".", 1)[0])
    stream = (
        ir.Message(
            STREAM_REQUEST_MESSAGE,
            (ir.Field(STREAM_REQUEST_FIELD, 1, REQUEST_MESSAGE, "message", "optional", None, True,
                      "One request of the stream.", contract=NO_CONTRACT),),
            "One item of a PredictStream call; wraps a PredictRequest.",
        ),
        ir.Message(
            STREAM_RESPONSE_MESSAGE,
            (ir.Field(STREAM_RESPONSE_FIELD, 1, RESPONSE_MESSAGE, "message", "optional", None, True,
                      "The answer to the request at the same position of the stream.", contract=NO_CONTRACT),),
            "One answer of a PredictStream call; wraps a PredictResponse.",
        ),
    )
    ordered = [m for m in messages if m.name in (REQUEST_MESSAGE, RESPONSE_MESSAGE)]
    ordered += list(stream)
    ordered += [m for m in messages if m.name not in (REQUEST_MESSAGE, RESPONSE_MESSAGE)]
    service = ir.Service(
        naming.service_name(schema.model),
        (
            ir.Method(PREDICT_METHOD, REQUEST_MESSAGE, RESPONSE_MESSAGE,
                      description=f"Runs {schema.display_name or schema.model} on one input."),
            ir.Method(PREDICT_STREAM_METHOD, STREAM_REQUEST_MESSAGE, STREAM_RESPONSE_MESSAGE, True, True,
                      "Runs the model on a stream of inputs; one answer per input, in order."),
        ),
        schema.description,
    )
    return ir.Package(
        package=naming.package_name(schema.model, major),
        model=schema.model,
        display_name=schema.display_name,
        description=schema.description,
        version=schema.version,
        messages=tuple(ordered),
        enums=enums,
        services=(service,),
    )


def _copy(history: History) -> History:
    return History(
        {
            key: Scope(
                scope.kind,
                scope.name,
                {
                    n: Slot(s.number, s.name, s.type_key, list(s.names), s.active)
                    for n, s in scope.slots.items()
                },
            )
            for key, scope in history.scopes.items()
        }
    )
