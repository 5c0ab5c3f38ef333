"""The compatibility rules: one declaration (data) and one handler (the comparison) per rule.

A declaration says what the rule is for, its category and the bump it requires when the subject
travels in requests and when it travels in responses. A handler is named after the rule ID in
lower case and receives one *pair* from the engine (``before``/``after``, either may be
missing); it returns the sentences describing what changed and contains no traversal at all.
IDs are permanent: a retired rule stays declared with ``deprecated_by`` naming its successor.

Direction (DESIGN.md, Compatibility): a request message must stay readable by the server when
old clients send it; a response message must stay readable by old clients. So a new required
input field is major while a new output field is minor; a removed output field is major while a
removed input field is minor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from .. import ir
from ..versioning import Bump, bump_rank
from .findings import Category, Direction
from .view import View, covered, json_name, presence, type_change, uncovered

Subject = Literal[
    "package", "service", "rpc", "message", "field", "enum", "enum_value", "reserved", "history", "release"
]
Warn = Literal["never", "response", "always"]

PROTO_UPDATING = "https://protobuf.dev/programming-guides/proto3/#updating"
PROTO_JSON = "https://protobuf.dev/programming-guides/json/"
BUF_RULES = "https://buf.build/docs/breaking/rules/"
CARGO_SEMVER = "https://doc.rust-lang.org/cargo/reference/semver.html"
DESIGN = "docs/compat.md#direction"


@dataclass(frozen=True)
class Rule:
    """One rule, as data. ``request``/``response`` are the bumps it requires in each direction."""

    id: str
    name: str
    description: str
    category: Category
    subject: Subject
    request: Bump
    response: Bump
    reference: str
    warn: Warn = "never"
    deprecated_by: str | None = None

    def bump(self, direction: Direction) -> Bump:
        if direction == "request":
            return self.request
        if direction == "response":
            return self.response
        return max(self.request, self.response, key=bump_rank)

    def warns(self, direction: Direction) -> bool:
        return self.warn == "always" or (self.warn == "response" and direction != "request")


# -- pairs ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Pair:
    """What the engine hands a handler: where it is, which way it travels, both views."""

    path: str
    direction: Direction
    file: str
    before_view: View
    after_view: View


@dataclass(frozen=True, kw_only=True)
class PackagePair(Pair):
    before: str
    after: str


@dataclass(frozen=True, kw_only=True)
class ServicePair(Pair):
    name: str
    before: ir.Service | None
    after: ir.Service | None


@dataclass(frozen=True, kw_only=True)
class RpcPair(Pair):
    service: str
    before: ir.Method | None
    after: ir.Method | None


@dataclass(frozen=True, kw_only=True)
class MessagePair(Pair):
    name: str
    before: ir.Message | None
    after: ir.Message | None
    moved_from: str | None = None


@dataclass(frozen=True, kw_only=True)
class FieldPair(Pair):
    message: str
    before: ir.Field | None
    after: ir.Field | None
    before_message: ir.Message | None
    after_message: ir.Message | None
    before_facts: ir.FieldFacts = ir.NO_FACTS  # descriptors.py: oneof, default...
    after_facts: ir.FieldFacts = ir.NO_FACTS


@dataclass(frozen=True, kw_only=True)
class EnumPair(Pair):
    name: str
    before: ir.Enum | None
    after: ir.Enum | None


@dataclass(frozen=True, kw_only=True)
class EnumValuePair(Pair):
    enum: str
    number: int
    before: tuple[str, ...]  # names with this number (several with allow_alias)
    after: tuple[str, ...]
    after_enum: ir.Enum | None


@dataclass(frozen=True, kw_only=True)
class ReservedPair(Pair):
    """A message or enum present on both sides; ``kind`` is ``message`` or ``enum``."""

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

    kind: Literal["message", "enum"]
    scope: str
    name: str
    number: int
    after: ir.Field | None
    number_holder: Holder | None
    name_holder: Holder | None
    number_reserved: str | None
    name_reserved: str | None


@dataclass(frozen=True, kw_only=True)
class ReleasePair(Pair):
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


# -- declarations ---------------------------------------------------------------------------


RULES: tuple[Rule, ...] = (
    # package, services, RPCs
    Rule(
        "PACKAGE_CHANGED",
        "package changed",
        "A file (or the model's proto package) moved to another proto package; every full type "
        "name and RPC path changes.",
        "WIRE",
        "package",
        "major",
        "major",
        BUF_RULES,
    ),
    Rule(
        "SERVICE_ADDED",
        "service added",
        "A new service appeared.",
        "SOURCE",
        "service",
        "minor",
        "minor",
        BUF_RULES,
    ),
    Rule(
        "SERVICE_REMOVED",
        "service removed",
        "A service disappeared; clients calling it get UNIMPLEMENTED.",
        "SOURCE",
        "service",
        "major",
        "major",
        BUF_RULES,
    ),
    Rule(
        "RPC_ADDED",
        "RPC added",
        "A new RPC appeared on a service.",
        "SOURCE",
        "rpc",
        "minor",
        "minor",
        BUF_RULES,
    ),
    Rule(
        "RPC_REMOVED",
        "RPC removed",
        "An RPC disappeared from a service; clients calling it get UNIMPLEMENTED.",
        "SOURCE",
        "rpc",
        "major",
        "major",
        BUF_RULES,
    ),
    Rule(
        "RPC_REQUEST_TYPE_CHANGED",
        "RPC request type changed",
        "An RPC takes another request message.",
        "WIRE",
        "rpc",
        "major",
        "major",
        BUF_RULES,
    ),
    Rule(
        "RPC_RESPONSE_TYPE_CHANGED",
        "RPC response type changed",
        "An RPC returns another response message.",
        "WIRE",
        "rpc",
        "major",
        "major",
        BUF_RULES,
    ),
    Rule(
        "RPC_STREAMING_CHANGED",
        "RPC streaming changed",
        "An RPC changed client or server streaming; calls of the old shape fail.",
        "WIRE",
        "rpc",
        "major",
        "major",
        BUF_RULES,
    ),
    # messages
    Rule(
        "MESSAGE_ADDED",
        "message added",
        "A new message type appeared.",
        "SOURCE",
        "message",
        "minor",
        "minor",
        BUF_RULES,
    ),
    Rule(
        "MESSAGE_REMOVED",
        "message removed",
        "A message type disappeared; generated code that names it breaks, and in responses old "
        "clients lose what it carried.",
        "SOURCE",
        "message",
        "minor",
        "major",
        BUF_RULES,
    ),
    Rule(
        "MESSAGE_MOVED",
        "message moved",
        "A message moved to another parent or package under the same short name; its full name, "
        "and so every field that refers to it, changed.",
        "SOURCE",
        "message",
        "major",
        "major",
        BUF_RULES,
    ),
    # fields
    Rule(
        "FIELD_ADDED_REQUIRED",
        "required field added",
        "A new field the model needs: old clients do not send it, so in a request it breaks them; "
        "in a response old clients just ignore it.",
        "SEMANTIC",
        "field",
        "major",
        "minor",
        DESIGN,
    ),
    Rule(
        "FIELD_ADDED_OPTIONAL",
        "optional field added",
        "A new field that may be absent: old readers skip it as unknown.",
        "SOURCE",
        "field",
        "minor",
        "minor",
        DESIGN,
    ),
    Rule(
        "FIELD_REMOVED",
        "field removed",
        "A field disappeared: in a response old clients lose a value they read; in a request the "
        "server just ignores what old clients still send.",
        "SEMANTIC",
        "field",
        "minor",
        "major",
        DESIGN,
    ),
    Rule(
        "FIELD_REMOVED_NUMBER_NOT_RESERVED",
        "field removed without reserving its number",
        "A field disappeared and its number is not reserved, so a later field may reuse it with another meaning.",
        "WIRE",
        "field",
        "major",
        "major",
        BUF_RULES,
    ),
    Rule(
        "FIELD_REMOVED_NAME_NOT_RESERVED",
        "field removed without reserving its name",
        "A field disappeared and its name is not reserved, so a later field may reuse its JSON "
        "key with another meaning.",
        "WIRE_JSON",
        "field",
        "major",
        "major",
        BUF_RULES,
    ),
    Rule(
        "FIELD_RENAMED",
        "field renamed",
        "A field number changed name: the binary encoding is unchanged, the JSON key and the "
        "generated accessors are not.",
        "WIRE_JSON",
        "field",
        "major",
        "major",
        BUF_RULES,
    ),
    Rule(
        "FIELD_JSON_NAME_CHANGED",
        "field JSON name changed",
        "A field kept its name but changed its json_name, so its JSON key changed.",
        "WIRE_JSON",
        "field",
        "major",
        "major",
        BUF_RULES,
    ),
    Rule(
        "FIELD_TYPE_CHANGED_INCOMPATIBLE",
        "field type changed incompatibly",
        "A field changed to a type whose encoding old readers cannot read (or, in the registry, "
        "moved to a fresh number because of it).",
        "WIRE",
        "field",
        "major",
        "major",
        PROTO_UPDATING,
    ),
    Rule(
        "FIELD_TYPE_CHANGED_JSON_INCOMPATIBLE",
        "field type changed, JSON-incompatible",
        "A field changed between wire-compatible types whose JSON forms differ (int32 and int64, string and bytes).",
        "WIRE_JSON",
        "field",
        "major",
        "major",
        PROTO_JSON,
    ),
    Rule(
        "FIELD_TYPE_CHANGED_COMPATIBLE",
        "field type changed compatibly",
        "A field changed between wire- and JSON-compatible types (int32 and uint32, fixed32 and "
        "sfixed32, an enum moved with all its values): bytes still decode, but values may be "
        "reinterpreted and generated code changes.",
        "SOURCE",
        "field",
        "major",
        "major",
        PROTO_UPDATING,
        warn="always",
    ),
    Rule(
        "FIELD_CARDINALITY_CHANGED",
        "field cardinality changed",
        "A field changed between singular, repeated and map.",
        "WIRE",
        "field",
        "major",
        "major",
        PROTO_UPDATING,
    ),
    Rule(
        "FIELD_CARDINALITY_CHANGED_JSON_INCOMPATIBLE",
        "field cardinality changed, JSON-incompatible",
        "A repeated field of a map's entry message became that map, or back: the same bytes, but "
        "JSON writes maps as objects and repeated fields as arrays.",
        "WIRE_JSON",
        "field",
        "major",
        "major",
        BUF_RULES,
    ),
    Rule(
        "FIELD_WIRE_REQUIRED_CHANGED",
        "proto2 required field added, removed or changed",
        "A proto2 required field appeared, disappeared or changed requiredness: a reader that "
        "expects it refuses messages without it.",
        "WIRE",
        "field",
        "major",
        "major",
        BUF_RULES,
    ),
    Rule(
        "FIELD_DEFAULT_CHANGED",
        "field default changed",
        "A proto2 field changed its default value: readers of the two releases see different "
        "values for an absent field.",
        "WIRE",
        "field",
        "major",
        "major",
        BUF_RULES,
    ),
    Rule(
        "FIELD_PRESENCE_CHANGED",
        "field presence changed",
        "A singular field changed between explicit presence (optional) and implicit presence; "
        "generated has-accessors change and zero values are sent or not.",
        "SOURCE",
        "field",
        "major",
        "major",
        BUF_RULES,
    ),
    Rule(
        "FIELD_MADE_REQUIRED",
        "field made required",
        "The model now requires a field that was optional: old clients may not send it.",
        "SEMANTIC",
        "field",
        "major",
        "minor",
        DESIGN,
    ),
    Rule(
        "FIELD_MADE_OPTIONAL",
        "field made optional",
        "A field the model always set may now be absent: old clients may rely on it.",
        "SEMANTIC",
        "field",
        "minor",
        "major",
        DESIGN,
    ),
    Rule(
        "FIELD_ONEOF_CHANGED",
        "field oneof changed",
        "A field moved into, out of, or between oneofs; setting one member clears the others.",
        "WIRE",
        "field",
        "major",
        "major",
        BUF_RULES,
    ),
    # enums
    Rule("ENUM_ADDED", "enum added", "A new enum type appeared.", "SOURCE", "enum", "minor", "minor", BUF_RULES),
    Rule(
        "ENUM_REMOVED",
        "enum removed",
        "An enum type disappeared; generated code that names it breaks.",
        "SOURCE",
        "enum",
        "minor",
        "major",
        BUF_RULES,
    ),
    Rule(
        "ENUM_VALUE_ADDED",
        "enum value added",
        "A new enum value: servers accept it, but old clients receiving it in a response see an unknown value.",
        "SEMANTIC",
        "enum_value",
        "minor",
        "minor",
        PROTO_UPDATING,
        warn="response",
    ),
    Rule(
        "ENUM_VALUE_REMOVED",
        "enum value removed",
        "An enum value disappeared: old clients may still send it in requests.",
        "SEMANTIC",
        "enum_value",
        "major",
        "minor",
        DESIGN,
    ),
    Rule(
        "ENUM_VALUE_REMOVED_NUMBER_NOT_RESERVED",
        "enum value removed without reserving its number",
        "An enum value disappeared and its number is not reserved.",
        "WIRE",
        "enum_value",
        "major",
        "major",
        BUF_RULES,
    ),
    Rule(
        "ENUM_VALUE_REMOVED_NAME_NOT_RESERVED",
        "enum value removed without reserving its name",
        "An enum value disappeared and its name is not reserved.",
        "WIRE_JSON",
        "enum_value",
        "major",
        "major",
        BUF_RULES,
    ),
    Rule(
        "ENUM_VALUE_RENAMED",
        "enum value renamed",
        "An enum number changed name; JSON carries enum values by name.",
        "WIRE_JSON",
        "enum_value",
        "major",
        "major",
        BUF_RULES,
    ),
    # reservations and history
    Rule(
        "RESERVED_NUMBER_REMOVED",
        "reserved number removed",
        "A message or enum stopped reserving a number, so it may be reused.",
        "WIRE",
        "reserved",
        "major",
        "major",
        BUF_RULES,
    ),
    Rule(
        "RESERVED_NAME_REMOVED",
        "reserved name removed",
        "A message or enum stopped reserving a name, so it may be reused.",
        "WIRE",
        "reserved",
        "major",
        "major",
        BUF_RULES,
    ),
    Rule(
        "RESERVED_NUMBER_REUSED",
        "reserved number reused",
        "A number reserved in any earlier release is used again by something other than the "
        "field or value that had it.",
        "WIRE",
        "history",
        "major",
        "major",
        PROTO_UPDATING,
    ),
    Rule(
        "RESERVED_NAME_REUSED",
        "reserved name reused",
        "A name reserved in any earlier release is used again by something other than the field or value that had it.",
        "WIRE_JSON",
        "history",
        "major",
        "major",
        PROTO_JSON,
    ),
    Rule(
        "FIELD_NUMBER_REUSED",
        "field number reused",
        "A number that an earlier release used for another field (another name or an "
        "incompatible type) is used again; pairwise tools see only an added field.",
        "WIRE",
        "history",
        "major",
        "major",
        PROTO_UPDATING,
    ),
    Rule(
        "FIELD_NAME_REUSED",
        "field name reused with another type",
        "A field name that an earlier release used with an incompatible type is used again; "
        "JSON clients of that release send values of the old type.",
        "WIRE_JSON",
        "history",
        "major",
        "major",
        PROTO_JSON,
    ),
    # releases
    Rule(
        "VERSION_NOT_BUMPED",
        "version not bumped",
        "The schema changed but the model version did not; a release is immutable.",
        "SEMANTIC",
        "release",
        "patch",
        "patch",
        CARGO_SEMVER,
    ),
    Rule(
        "VERSION_WENT_BACKWARDS",
        "version went backwards",
        "The declared version is lower than the newest registered release; versions only go forward.",
        "SEMANTIC",
        "release",
        "major",
        "major",
        CARGO_SEMVER,
    ),
)

RULES_BY_ID: dict[str, Rule] = {r.id: r for r in RULES}

Handler = Callable[[Any], Iterator[Hit]]
HANDLERS: dict[str, Handler] = {}


def handler(function: Handler) -> Handler:
    """Register ``function`` as the handler of the rule named after it."""
    HANDLERS[function.__name__.upper()] = function
    return function


def rules_for(subject: Subject) -> list[Rule]:
    return list(_RULES_BY_SUBJECT.get(subject, ()))


_RULES_BY_SUBJECT: dict[str, tuple[Rule, ...]] = {
    subject: tuple(r for r in RULES if r.subject == subject and r.deprecated_by is None)
    for subject in {r.subject for r in RULES}
}


def _q(text: object) -> str:
    return f'"{text}"'


def _field_label(f: ir.Field, other: ir.Field | None = None) -> str:
    if other is not None and other.number != f.number:
        return f"{_q(f.name)} ({other.number}, now {f.number})"
    return f"{_q(f.name)} ({f.number})"


# -- handlers: package, services, RPCs ------------------------------------------------------


@handler
def package_changed(pair: PackagePair) -> Iterator[Hit]:
    if pair.before != pair.after:
        where = f' in file "{pair.file}"' if pair.after_view.qualified else ""
        yield Hit(f"Package{where} changed from {_q(pair.before)} to {_q(pair.after)}.", pair.before, pair.after)


@handler
def service_added(pair: ServicePair) -> Iterator[Hit]:
    if pair.before is None and pair.after is not None:
        yield Hit(f"Service {_q(pair.name)} was added.", None, pair.name)


@handler
def service_removed(pair: ServicePair) -> Iterator[Hit]:
    if pair.before is not None and pair.after is None:
        yield Hit(f"Service {_q(pair.name)} was removed.", pair.name, None)


@handler
def rpc_added(pair: RpcPair) -> Iterator[Hit]:
    if pair.before is None and pair.after is not None:
        yield Hit(f"RPC {_q(pair.after.name)} was added to service {_q(pair.service)}.", None, pair.after.name)


@handler
def rpc_removed(pair: RpcPair) -> Iterator[Hit]:
    if pair.before is not None and pair.after is None:
        yield Hit(f"RPC {_q(pair.before.name)} was removed from service {_q(pair.service)}.", pair.before.name, None)


@handler
def rpc_request_type_changed(pair: RpcPair) -> Iterator[Hit]:
    b, a = pair.before, pair.after
    if b is not None and a is not None and b.input_type != a.input_type:
        yield Hit(
            f"RPC {_q(a.name)} on {_q(pair.service)} changed request type from {_q(b.input_type)} "
            f"to {_q(a.input_type)}.",
            b.input_type,
            a.input_type,
        )


@handler
def rpc_response_type_changed(pair: RpcPair) -> Iterator[Hit]:
    b, a = pair.before, pair.after
    if b is not None and a is not None and b.output_type != a.output_type:
        yield Hit(
            f"RPC {_q(a.name)} on {_q(pair.service)} changed response type from {_q(b.output_type)} "
            f"to {_q(a.output_type)}.",
            b.output_type,
            a.output_type,
        )


def _streaming(m: ir.Method) -> str:
    return {
        (False, False): "unary",
        (True, False): "client streaming",
        (False, True): "server streaming",
        (True, True): "bidirectional streaming",
    }[(m.client_streaming, m.server_streaming)]


@handler
def rpc_streaming_changed(pair: RpcPair) -> Iterator[Hit]:
    b, a = pair.before, pair.after
    if b is not None and a is not None and _streaming(b) != _streaming(a):
        yield Hit(
            f"RPC {_q(a.name)} on {_q(pair.service)} changed from {_streaming(b)} to {_streaming(a)}.",
            _streaming(b),
            _streaming(a),
        )


# -- handlers: messages ---------------------------------------------------------------------


@handler
def message_added(pair: MessagePair) -> Iterator[Hit]:
    if pair.before is None and pair.after is not None and pair.moved_from is None:
        yield Hit(f"Message {_q(pair.name)} was added.", None, pair.name)


@handler
def message_removed(pair: MessagePair) -> Iterator[Hit]:
    if pair.before is not None and pair.after is None:
        yield Hit(f"Message {_q(pair.name)} was removed.", pair.name, None)


@handler
def message_moved(pair: MessagePair) -> Iterator[Hit]:
    if pair.moved_from is not None and pair.after is not None:
        yield Hit(f"Message {_q(pair.moved_from)} moved to {_q(pair.name)}.", pair.moved_from, pair.name)


# -- handlers: fields -----------------------------------------------------------------------


def _both(pair: FieldPair) -> tuple[ir.Field, ir.Field] | None:
    if pair.before is None or pair.after is None:
        return None
    return pair.before, pair.after


@handler
def field_added_required(pair: FieldPair) -> Iterator[Hit]:
    a = pair.after
    if pair.before is None and a is not None and a.required:
        yield Hit(
            f"Field {_field_label(a)} was added to {_q(pair.message)} as required; clients of "
            "earlier releases do not send it.",
            None,
            a.type_text,
        )


@handler
def field_added_optional(pair: FieldPair) -> Iterator[Hit]:
    a = pair.after
    if pair.before is None and a is not None and not a.required:
        yield Hit(f"Field {_field_label(a)} was added to {_q(pair.message)}.", None, a.type_text)


@handler
def field_removed(pair: FieldPair) -> Iterator[Hit]:
    b = pair.before
    if b is not None and pair.after is None:
        yield Hit(f"Field {_field_label(b)} was removed from {_q(pair.message)}.", b.type_text, None)


@handler
def field_removed_number_not_reserved(pair: FieldPair) -> Iterator[Hit]:
    b, m = pair.before, pair.after_message
    if b is None or pair.after is not None or m is None:
        return
    if not any(b.number in r for r in m.reserved_numbers) and m.field_by_number(b.number) is None:
        yield Hit(
            f"Field {_field_label(b)} was removed from {_q(pair.message)} without reserving the number {b.number}.",
            str(b.number),
            None,
        )


@handler
def field_removed_name_not_reserved(pair: FieldPair) -> Iterator[Hit]:
    b, m = pair.before, pair.after_message
    if b is None or pair.after is not None or m is None:
        return
    # As buf does, a name now used by a field of another number still counts as dropped: JSON
    # clients of the old release would send the old field's values under it.
    if b.name not in m.reserved_names:
        yield Hit(
            f"Field {_field_label(b)} was removed from {_q(pair.message)} without reserving the name {_q(b.name)}.",
            b.name,
            None,
        )


@handler
def field_renamed(pair: FieldPair) -> Iterator[Hit]:
    both = _both(pair)
    if both and both[0].name != both[1].name:
        b, a = both
        yield Hit(
            f"Field {a.number} on {_q(pair.message)} changed name from {_q(b.name)} to {_q(a.name)}.",
            b.name,
            a.name,
        )


@handler
def field_json_name_changed(pair: FieldPair) -> Iterator[Hit]:
    both = _both(pair)
    if both and both[0].name == both[1].name and json_name(both[0]) != json_name(both[1]):
        b, a = both
        yield Hit(
            f"Field {_field_label(a, b)} on {_q(pair.message)} changed JSON name from "
            f"{_q(json_name(b))} to {_q(json_name(a))}.",
            json_name(b),
            json_name(a),
        )


def _type_hit(pair: FieldPair, wanted: str, note: str = "") -> Iterator[Hit]:
    both = _both(pair)
    if not both or both[0].cardinality != both[1].cardinality:
        return
    b, a = both
    if type_change(b, a, pair.before_view, pair.after_view) == wanted:
        yield Hit(
            f"Field {_field_label(a, b)} on {_q(pair.message)} changed type from "
            f"{_q(b.proto_type)} to {_q(a.proto_type)}{note}.",
            b.proto_type,
            a.proto_type,
        )


@handler
def field_type_changed_incompatible(pair: FieldPair) -> Iterator[Hit]:
    yield from _type_hit(pair, "incompatible")


@handler
def field_type_changed_json_incompatible(pair: FieldPair) -> Iterator[Hit]:
    yield from _type_hit(pair, "json_incompatible", ", which keeps the binary encoding but changes the JSON one")


@handler
def field_type_changed_compatible(pair: FieldPair) -> Iterator[Hit]:
    yield from _type_hit(pair, "compatible", ", which keeps both encodings but may reinterpret values")


def _entry_swap(pair: FieldPair) -> bool:
    """A repeated field of a map's very entry message, turned into that map or back: same bytes."""
    both = _both(pair)
    if not both or {both[0].cardinality, both[1].cardinality} != {"repeated", "map"}:
        return False
    b, a = both
    entry = pair.after_facts.entry if a.label == "map" else pair.before_facts.entry
    repeated = b if b.label == "repeated" else a
    return entry is not None and repeated.type == entry


@handler
def field_cardinality_changed(pair: FieldPair) -> Iterator[Hit]:
    both = _both(pair)
    if both and both[0].cardinality != both[1].cardinality and not _entry_swap(pair):
        b, a = both
        yield Hit(
            f"Field {_field_label(a, b)} on {_q(pair.message)} changed from {_q(b.type_text)} to {_q(a.type_text)}.",
            b.type_text,
            a.type_text,
        )


@handler
def field_cardinality_changed_json_incompatible(pair: FieldPair) -> Iterator[Hit]:
    both = _both(pair)
    if both and _entry_swap(pair):
        b, a = both
        yield Hit(
            f"Field {_field_label(a, b)} on {_q(pair.message)} changed from {_q(b.type_text)} to "
            f"{_q(a.type_text)}, which keeps the binary encoding but changes the JSON one.",
            b.type_text,
            a.type_text,
        )


@handler
def field_presence_changed(pair: FieldPair) -> Iterator[Hit]:
    both = _both(pair)
    if both and both[0].cardinality == both[1].cardinality == "single" and presence(both[0]) != presence(both[1]):
        b, a = both
        yield Hit(
            f"Field {_field_label(a, b)} on {_q(pair.message)} changed presence from "
            f"{_q(presence(b))} to {_q(presence(a))}.",
            presence(b),
            presence(a),
        )


@handler
def field_made_required(pair: FieldPair) -> Iterator[Hit]:
    both = _both(pair)
    if both and not both[0].required and both[1].required:
        yield Hit(
            f"Field {_field_label(both[1], both[0])} on {_q(pair.message)} changed from optional to required.",
            "optional",
            "required",
        )


@handler
def field_made_optional(pair: FieldPair) -> Iterator[Hit]:
    both = _both(pair)
    if both and both[0].required and not both[1].required:
        yield Hit(
            f"Field {_field_label(both[1], both[0])} on {_q(pair.message)} changed from required to optional.",
            "required",
            "optional",
        )


@handler
def field_oneof_changed(pair: FieldPair) -> Iterator[Hit]:
    both = _both(pair)
    before, after = pair.before_facts.oneof, pair.after_facts.oneof
    if both and before != after:
        b_text = f"oneof {_q(before)}" if before else "no oneof"
        a_text = f"oneof {_q(after)}" if after else "no oneof"
        yield Hit(
            f"Field {_field_label(both[1], both[0])} on {_q(pair.message)} moved from {b_text} to {a_text}.",
            before,
            after,
        )


@handler
def field_wire_required_changed(pair: FieldPair) -> Iterator[Hit]:
    before, after = pair.before_facts.wire_required, pair.after_facts.wire_required
    f = pair.after or pair.before
    if f is None or before == after or not (before or after):
        return
    if pair.before is None or pair.after is None:
        verb = "was added to" if pair.before is None else "was removed from"
        yield Hit(
            f"Required field {_field_label(f)} {verb} {_q(pair.message)}.",
            "required" if before else None,
            "required" if after else None,
        )
        return
    yield Hit(
        f"Field {_field_label(f)} on {_q(pair.message)} changed from {'required' if before else 'optional'} "
        f"to {'required' if after else 'optional'} on the wire (proto2).",
        "required" if before else "optional",
        "required" if after else "optional",
    )


_ZERO_DEFAULTS = {"", "0", "0.0", "-0", "false", "0e0"}


@handler
def field_default_changed(pair: FieldPair) -> Iterator[Hit]:
    both = _both(pair)
    before, after = pair.before_facts.default or "", pair.after_facts.default or ""
    if both and before != after and not (before in _ZERO_DEFAULTS and after in _ZERO_DEFAULTS):
        yield Hit(
            f"Field {_field_label(both[1], both[0])} on {_q(pair.message)} changed default value from "
            f"{_q(before)} to {_q(after)}.",
            before,
            after,
        )


# -- handlers: enums ------------------------------------------------------------------------


@handler
def enum_added(pair: EnumPair) -> Iterator[Hit]:
    if pair.before is None and pair.after is not None:
        yield Hit(f"Enum {_q(pair.name)} was added.", None, pair.name)


@handler
def enum_removed(pair: EnumPair) -> Iterator[Hit]:
    if pair.before is not None and pair.after is None:
        yield Hit(f"Enum {_q(pair.name)} was removed.", pair.name, None)


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(_q(n) for n in names)


@handler
def enum_value_added(pair: EnumValuePair) -> Iterator[Hit]:
    if not pair.before and pair.after:
        note = "; clients of earlier releases will see an unknown value" if pair.direction != "request" else ""
        yield Hit(
            f"Enum value {_names(pair.after)} ({pair.number}) was added to {_q(pair.enum)}{note}.",
            None,
            pair.after[0],
        )


@handler
def enum_value_removed(pair: EnumValuePair) -> Iterator[Hit]:
    if pair.before and not pair.after:
        yield Hit(
            f"Enum value {_names(pair.before)} ({pair.number}) was removed from {_q(pair.enum)}.",
            pair.before[0],
            None,
        )


@handler
def enum_value_removed_number_not_reserved(pair: EnumValuePair) -> Iterator[Hit]:
    e = pair.after_enum
    if pair.before and not pair.after and e is not None and not any(pair.number in r for r in e.reserved_numbers):
        yield Hit(
            f"Enum value {_names(pair.before)} ({pair.number}) was removed from {_q(pair.enum)} without "
            f"reserving the number {pair.number}.",
            str(pair.number),
            None,
        )


@handler
def enum_value_removed_name_not_reserved(pair: EnumValuePair) -> Iterator[Hit]:
    e = pair.after_enum
    if not pair.before or pair.after or e is None:
        return
    missing = tuple(n for n in pair.before if n not in e.reserved_names and e.value_by_name(n) is None)
    if missing:
        yield Hit(
            f"Enum value {_names(pair.before)} ({pair.number}) was removed from {_q(pair.enum)} without "
            f"reserving the name {_names(missing)}.",
            ", ".join(missing),
            None,
        )


@handler
def enum_value_renamed(pair: EnumValuePair) -> Iterator[Hit]:
    # As buf does: every old name must survive (adding an alias is fine, dropping one is not).
    if pair.before and pair.after and not set(pair.before) <= set(pair.after):
        yield Hit(
            f"Enum value {pair.number} on {_q(pair.enum)} changed name from {_names(pair.before)} to "
            f"{_names(pair.after)}.",
            ", ".join(pair.before),
            ", ".join(pair.after),
        )


# -- handlers: reservations and history -----------------------------------------------------


@handler
def reserved_number_removed(pair: ReservedPair) -> Iterator[Hit]:
    after_ranges = pair.after.reserved_numbers + ir.compress_ranges(pair.restored_numbers)
    if covered(pair.before.reserved_numbers, after_ranges):
        return
    for r in uncovered(pair.before.reserved_numbers, after_ranges):
        yield Hit(f"{pair.kind.capitalize()} {_q(pair.name)} no longer reserves {r}.", str(r), None)


@handler
def reserved_name_removed(pair: ReservedPair) -> Iterator[Hit]:
    for name in pair.before.reserved_names:
        if name not in pair.after.reserved_names and name not in pair.restored_names:
            yield Hit(
                f"{pair.kind.capitalize()} {_q(pair.name)} no longer reserves the name {_q(name)}.",
                name,
                None,
            )


def _holder_text(h: Holder) -> str:
    """``"age" (3, "int64")``: an earlier holder of a number or name."""
    kind = f", {_q(h.field.proto_type)}" if h.field is not None else ""
    return f"{_q(h.name)} ({h.number}{kind})"


def _item(pair: HistoryPair) -> str:
    noun = "Field" if pair.kind == "message" else "Enum value"
    return f"{noun} {_q(pair.name)} ({pair.number}) on {_q(pair.scope)}"


def _same_item(pair: HistoryPair, h: Holder) -> bool:
    """Whether ``h`` is the very field (or value) ``pair`` describes, come back unchanged."""
    if h.name != pair.name or h.number != pair.number:
        return False
    if pair.after is None or h.field is None:
        return True
    return _fields_compatible(h.field, pair.after, pair)


def _fields_compatible(old: ir.Field, new: ir.Field, pair: Pair) -> bool:
    return old.cardinality == new.cardinality and type_change(old, new, pair.before_view, pair.after_view) not in (
        "incompatible",
    )


@handler
def reserved_number_reused(pair: HistoryPair) -> Iterator[Hit]:
    if pair.number_reserved is None:
        return
    h = pair.number_holder
    if h is not None and _same_item(pair, h):
        return
    was = f"; {_holder_text(h)} had it in {h.label}" if h is not None else ""
    yield Hit(
        f"{_item(pair)} reuses number {pair.number}, reserved in {pair.number_reserved}{was}.",
        h.name if h else None,
        pair.name,
    )


@handler
def reserved_name_reused(pair: HistoryPair) -> Iterator[Hit]:
    if pair.name_reserved is None:
        return
    h = pair.name_holder
    if h is not None and _same_item(pair, h):
        return
    was = f"; {_holder_text(h)} had it in {h.label}" if h is not None else ""
    yield Hit(
        f"{_item(pair)} reuses the name {_q(pair.name)}, reserved in {pair.name_reserved}{was}.",
        _holder_text(h) if h else None,
        pair.name,
    )


@handler
def field_number_reused(pair: HistoryPair) -> Iterator[Hit]:
    h = pair.number_holder
    if pair.kind != "message" or pair.number_reserved is not None or h is None or pair.after is None:
        return
    if h.name != pair.name or (h.field is not None and not _fields_compatible(h.field, pair.after, pair)):
        yield Hit(
            f"{_item(pair)} reuses number {pair.number}, which {_holder_text(h)} had in {h.label}.",
            _holder_text(h),
            f"{pair.name} ({pair.after.proto_type})",
        )


@handler
def field_name_reused(pair: HistoryPair) -> Iterator[Hit]:
    h = pair.name_holder
    if pair.kind != "message" or pair.name_reserved is not None or h is None or pair.after is None:
        return
    if h.field is not None and not _fields_compatible(h.field, pair.after, pair):
        yield Hit(
            f"{_item(pair)} is {_q(pair.after.proto_type)}, but {_holder_text(h)} had its name in {h.label}.",
            h.field.proto_type,
            pair.after.proto_type,
        )


# -- handlers: releases ---------------------------------------------------------------------


@handler
def version_not_bumped(pair: ReleasePair) -> Iterator[Hit]:
    if pair.before == pair.after and pair.schema_changed:
        yield Hit(
            f"{pair.model} {pair.after} is already registered with a different schema; bump the version.",
            pair.before,
            pair.after,
        )


@handler
def version_went_backwards(pair: ReleasePair) -> Iterator[Hit]:
    from ..versioning import parse_version

    if parse_version(pair.after) < parse_version(pair.newest):
        yield Hit(
            f"{pair.model} {pair.after} is lower than the newest release {pair.newest}; choose a "
            f"version above {pair.newest}.",
            pair.newest,
            pair.after,
        )
