"""What the engine hands a rule: one *pair*, the before and after of one thing, either may be missing.

The engine (``engine.py``) walks two snapshots once and builds these; a rule's handler
(``rules.py``) receives the pair of its subject and only compares. The type of a handler's
``pair`` parameter says which subject the rule looks at (:attr:`Pair.subject`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from .. import ir
from .findings import Direction
from .view import View

Subject = Literal[
    "package", "service", "rpc", "message", "field", "enum", "enum_value", "reserved", "history", "release"
]


@dataclass(frozen=True, kw_only=True)
class Pair:
    """Where the pair is, which way it travels, and both snapshots (for lookups across them)."""

    subject: ClassVar[Subject]
    path: str
    direction: Direction
    file: str
    before_view: View
    after_view: View


@dataclass(frozen=True, kw_only=True)
class PackagePair(Pair):
    subject: ClassVar[Subject] = "package"
    before: str
    after: str


@dataclass(frozen=True, kw_only=True)
class ServicePair(Pair):
    subject: ClassVar[Subject] = "service"
    name: str
    before: ir.Service | None
    after: ir.Service | None


@dataclass(frozen=True, kw_only=True)
class RpcPair(Pair):
    subject: ClassVar[Subject] = "rpc"
    service: str
    before: ir.Method | None
    after: ir.Method | None


@dataclass(frozen=True, kw_only=True)
class MessagePair(Pair):
    subject: ClassVar[Subject] = "message"
    name: str
    before: ir.Message | None
    after: ir.Message | None
    moved_from: str | None = None
    # resolved features (json_format) of each side; empty for registry releases (proto3)
    before_features: Mapping[str, str] = field(default_factory=dict)
    after_features: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class FieldPair(Pair):
    """One field, paired by number (and, for registry history, leftovers by name).

    ``before_facts``/``after_facts`` are what descriptors say that the IR field has no place for
    (a oneof, proto2 ``required`` and defaults, a map's entry message; see ``ir.FieldFacts``).
    """

    subject: ClassVar[Subject] = "field"
    message: str
    before: ir.Field | None
    after: ir.Field | None
    before_message: ir.Message | None
    after_message: ir.Message | None
    before_facts: ir.FieldFacts = ir.NO_FACTS
    after_facts: ir.FieldFacts = ir.NO_FACTS


@dataclass(frozen=True, kw_only=True)
class EnumPair(Pair):
    subject: ClassVar[Subject] = "enum"
    name: str
    before: ir.Enum | None
    after: ir.Enum | None
    # resolved features (json_format, enum_type) of each side; empty for registry releases (proto3)
    before_features: Mapping[str, str] = field(default_factory=dict)
    after_features: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class EnumValuePair(Pair):
    subject: ClassVar[Subject] = "enum_value"
    enum: str
    number: int
    before: tuple[str, ...]  # names with this number (several with allow_alias)
    after: tuple[str, ...]
    after_enum: ir.Enum | None


@dataclass(frozen=True, kw_only=True)
class ReservedPair(Pair):
    """A message or enum present on both sides; ``kind`` is ``message`` or ``enum``."""

    subject: ClassVar[Subject] = "reserved"
    kind: Literal["message", "enum"]
    name: str
    before: ir.Message | ir.Enum
    after: ir.Message | ir.Enum
    restored_numbers: frozenset[int]
    restored_names: frozenset[str]


@dataclass(frozen=True)
class Holder:
    """Who held a number or a name in an earlier snapshot of the history."""

    label: str
    name: str
    number: int
    field: ir.Field | None  # None for enum values


@dataclass(frozen=True, kw_only=True)
class HistoryPair(Pair):
    """One field or enum value of ``after`` against every earlier snapshot it is not paired with.

    ``number_holder``/``name_holder`` are the newest earlier holders of its number and of its
    name; ``number_reserved``/``name_reserved`` the newest snapshot that reserved them.
    """

    subject: ClassVar[Subject] = "history"
    kind: Literal["message", "enum"]
    scope: str
    name: str
    number: int
    after: ir.Field | None
    number_holder: Holder | None
    name_holder: Holder | None
    number_reserved: str | None
    name_reserved: str | None
    renamed_from: frozenset[str] = frozenset()
    """The names the model declares this field was renamed from (``renamed_from``), registry only."""


@dataclass(frozen=True, kw_only=True)
class ReleasePair(Pair):
    subject: ClassVar[Subject] = "release"
    model: str
    before: str  # the baseline version
    newest: str  # the newest registered version
    after: str  # the declared version
    schema_changed: bool


@dataclass(frozen=True)
class Hit:
    """What a handler found: the sentence and the two values it compares."""

    message: str
    before: str | None = None
    after: str | None = None
