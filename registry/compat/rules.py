"""The compatibility rules: one decorated handler per rule, its declaration in the decorator.

``@rule(id=..., name=..., description=..., category=..., request=..., response=..., ...)`` on a
handler is the whole rule: the keywords are the data (cargo-semver-checks' lint declarations,
buf's rule list), the function is the comparison. The handler is named after the ID in lower case
and receives one *pair* from the engine (``pairs.py``: ``before``/``after``, either may be
missing); the type of its ``pair`` parameter says what the rule looks at. It yields the
sentences describing what changed and contains no traversal at all. Rules run in the order they
are declared here, which is the order of ``protoreg rules`` and of findings.

A declaration says what the rule is for, its category, the bump it requires when the subject
travels in requests and in responses, the level a finding gets when the declared bump covers it
(``level``), and the ``buf breaking`` rules that report the same change (``buf``, so the
differential test compares rule by rule). IDs are permanent: a retired rule stays declared with
``deprecated_by`` naming its successor, and no longer runs.

Direction (DESIGN.md, Compatibility): a request message must stay readable by the server when
old clients send it; a response message must stay readable by old clients. So a new required
input field is major while a new output field is minor; a removed output field is major while a
removed input field is minor.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, TypeVar

from .. import ir
from ..contract import Contract, compare_contracts, renamed_from_line
from ..versioning import Bump, bump_rank, parse_version
from .findings import Category, Direction, Level
from .pairs import (
    EnumPair,
    EnumValuePair,
    FieldPair,
    HistoryPair,
    Hit,
    Holder,
    MessagePair,
    PackagePair,
    Pair,
    ReleasePair,
    ReservedPair,
    RpcPair,
    ServicePair,
    Subject,
)
from .view import covered, json_name, presence, type_change, uncovered

LevelPolicy = Literal["info", "warning", "warning_in_responses", "error"]
"""The level of a finding whose bump the declared version covers: ``info``; ``warning`` (always,
or only in responses); or ``error``, which fails the check whatever the bump. A finding whose bump
the declared version does not cover is always an error."""

PROTO_UPDATING = "https://protobuf.dev/programming-guides/proto3/#updating"
PROTO_JSON = "https://protobuf.dev/programming-guides/json/"
PROTO_FEATURES = "https://protobuf.dev/editions/features/"
PROTO_ENUMS = "https://protobuf.dev/programming-guides/enum/"
BUF_RULES = "https://buf.build/docs/breaking/rules/"
CARGO_SEMVER = "https://doc.rust-lang.org/cargo/reference/semver.html"
DESIGN = "docs/compat.md#direction"


@dataclass(frozen=True, kw_only=True)
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
    level: LevelPolicy = "info"
    buf: tuple[str, ...] = ()
    deprecated_by: str | None = None

    def bump(self, direction: Direction) -> Bump:
        if direction == "request":
            return self.request
        if direction == "response":
            return self.response
        return max(self.request, self.response, key=bump_rank)

    def warns(self, direction: Direction) -> bool:
        """Whether a finding the declared bump covers is a warning (rather than info) this way."""
        return self.level == "warning" or (self.level == "warning_in_responses" and direction != "request")

    def level_of(self, direction: Direction, required: Bump, declared: Bump) -> Level:
        """The level of a finding of this rule: an error when the declared bump is too small."""
        if self.level == "error" or bump_rank(required) > bump_rank(declared):
            return "error"
        return "warning" if self.warns(direction) else "info"

    @property
    def warn(self) -> Literal["never", "response", "always"]:
        """When the rule warns, as ``protoreg rules --format json`` has always said it."""
        return {"warning": "always", "warning_in_responses": "response"}.get(self.level, "never")  # type: ignore[return-value]


PairT = TypeVar("PairT", bound=Pair)
Handler = Callable[[PairT], Iterator[Hit]]

_DECLARED: dict[str, Rule] = {}
HANDLERS: dict[str, Callable[[Pair], Iterator[Hit]]] = {}
"""Rule ID -> handler. The engine hands a handler only pairs of its rule's subject, which is the
handler's own pair type, so the narrower parameter type holds."""


def rule(
    *,
    id: str,  # noqa: A002 - the keyword reads as the rule's ID, as in buf and cargo-semver-checks
    name: str,
    description: str,
    category: Category,
    request: Bump,
    response: Bump,
    reference: str,
    level: LevelPolicy = "info",
    buf: tuple[str, ...] = (),
    deprecated_by: str | None = None,
) -> Callable[[Handler[PairT]], Handler[PairT]]:
    """Declare the rule ``id`` with the decorated function as its handler (see the module docstring)."""

    def declare(handler: Handler[PairT]) -> Handler[PairT]:
        if handler.__name__ != id.lower():
            raise TypeError(f'the handler of {id} must be named "{id.lower()}", not "{handler.__name__}"')
        if id in _DECLARED:
            raise TypeError(f"rule {id} is declared twice")
        pair_type = typing.get_type_hints(handler)["pair"]
        _DECLARED[id] = Rule(
            id=id, name=name, description=description, category=category, subject=pair_type.subject,
            request=request, response=response, reference=reference, level=level, buf=buf,
            deprecated_by=deprecated_by,
        )
        HANDLERS[id] = typing.cast(Callable[[Pair], Iterator[Hit]], handler)
        return handler

    return declare


def rules_for(subject: Subject) -> list[Rule]:
    """The rules that run on pairs of ``subject``, in declaration order (retired ones excluded)."""
    return [r for r in _DECLARED.values() if r.subject == subject and r.deprecated_by is None]


def _q(text: object) -> str:
    return f'"{text}"'


def _field_label(f: ir.Field, other: ir.Field | None = None) -> str:
    if other is not None and other.number != f.number:
        return f"{_q(f.name)} ({other.number}, now {f.number})"
    return f"{_q(f.name)} ({f.number})"


# -- handlers: package, services, RPCs ------------------------------------------------------


@rule(
    id="PACKAGE_CHANGED",
    name="package changed",
    description=(
        "A file (or the model's proto package) moved to another proto package; every full type name and "
        "RPC path changes."
    ),
    category="WIRE",
    request="major",
    response="major",
    reference=BUF_RULES,
    buf=("FILE_SAME_PACKAGE",),
)
def package_changed(pair: PackagePair) -> Iterator[Hit]:
    if pair.before != pair.after:
        where = f' in file "{pair.file}"' if pair.after_view.qualified else ""
        yield Hit(f"Package{where} changed from {_q(pair.before)} to {_q(pair.after)}.", pair.before, pair.after)


@rule(
    id="SERVICE_ADDED",
    name="service added",
    description="A new service appeared.",
    category="SOURCE",
    request="minor",
    response="minor",
    reference=BUF_RULES,
)
def service_added(pair: ServicePair) -> Iterator[Hit]:
    if pair.before is None and pair.after is not None:
        yield Hit(f"Service {_q(pair.name)} was added.", None, pair.name)


@rule(
    id="SERVICE_REMOVED",
    name="service removed",
    description="A service disappeared; clients calling it get UNIMPLEMENTED.",
    category="SOURCE",
    request="major",
    response="major",
    reference=BUF_RULES,
    buf=("SERVICE_NO_DELETE", "PACKAGE_SERVICE_NO_DELETE"),
)
def service_removed(pair: ServicePair) -> Iterator[Hit]:
    if pair.before is not None and pair.after is None:
        yield Hit(f"Service {_q(pair.name)} was removed.", pair.name, None)


@rule(
    id="RPC_ADDED",
    name="RPC added",
    description="A new RPC appeared on a service.",
    category="SOURCE",
    request="minor",
    response="minor",
    reference=BUF_RULES,
)
def rpc_added(pair: RpcPair) -> Iterator[Hit]:
    if pair.before is None and pair.after is not None:
        yield Hit(f"RPC {_q(pair.after.name)} was added to service {_q(pair.service)}.", None, pair.after.name)


@rule(
    id="RPC_REMOVED",
    name="RPC removed",
    description="An RPC disappeared from a service; clients calling it get UNIMPLEMENTED.",
    category="SOURCE",
    request="major",
    response="major",
    reference=BUF_RULES,
    buf=("RPC_NO_DELETE",),
)
def rpc_removed(pair: RpcPair) -> Iterator[Hit]:
    if pair.before is not None and pair.after is None:
        yield Hit(f"RPC {_q(pair.before.name)} was removed from service {_q(pair.service)}.", pair.before.name, None)


@rule(
    id="RPC_REQUEST_TYPE_CHANGED",
    name="RPC request type changed",
    description="An RPC takes another request message.",
    category="WIRE",
    request="major",
    response="major",
    reference=BUF_RULES,
    buf=("RPC_SAME_REQUEST_TYPE",),
)
def rpc_request_type_changed(pair: RpcPair) -> Iterator[Hit]:
    b, a = pair.before, pair.after
    if b is not None and a is not None and b.input_type != a.input_type:
        yield Hit(
            f"RPC {_q(a.name)} on {_q(pair.service)} changed request type from {_q(b.input_type)} "
            f"to {_q(a.input_type)}.",
            b.input_type,
            a.input_type,
        )


@rule(
    id="RPC_RESPONSE_TYPE_CHANGED",
    name="RPC response type changed",
    description="An RPC returns another response message.",
    category="WIRE",
    request="major",
    response="major",
    reference=BUF_RULES,
    buf=("RPC_SAME_RESPONSE_TYPE",),
)
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


@rule(
    id="RPC_STREAMING_CHANGED",
    name="RPC streaming changed",
    description="An RPC changed client or server streaming; calls of the old shape fail.",
    category="WIRE",
    request="major",
    response="major",
    reference=BUF_RULES,
    buf=("RPC_SAME_CLIENT_STREAMING", "RPC_SAME_SERVER_STREAMING"),
)
def rpc_streaming_changed(pair: RpcPair) -> Iterator[Hit]:
    b, a = pair.before, pair.after
    if b is not None and a is not None and _streaming(b) != _streaming(a):
        yield Hit(
            f"RPC {_q(a.name)} on {_q(pair.service)} changed from {_streaming(b)} to {_streaming(a)}.",
            _streaming(b),
            _streaming(a),
        )


# -- handlers: messages ---------------------------------------------------------------------


@rule(
    id="MESSAGE_ADDED",
    name="message added",
    description="A new message type appeared.",
    category="SOURCE",
    request="minor",
    response="minor",
    reference=BUF_RULES,
)
def message_added(pair: MessagePair) -> Iterator[Hit]:
    if pair.before is None and pair.after is not None and pair.moved_from is None:
        yield Hit(f"Message {_q(pair.name)} was added.", None, pair.name)


@rule(
    id="MESSAGE_REMOVED",
    name="message removed",
    description=(
        "A message type disappeared; generated code that names it breaks, and in responses old clients "
        "lose what it carried."
    ),
    category="SOURCE",
    request="minor",
    response="major",
    reference=BUF_RULES,
    buf=("MESSAGE_NO_DELETE", "PACKAGE_MESSAGE_NO_DELETE"),
)
def message_removed(pair: MessagePair) -> Iterator[Hit]:
    if pair.before is not None and pair.after is None:
        yield Hit(f"Message {_q(pair.name)} was removed.", pair.name, None)


@rule(
    id="MESSAGE_MOVED",
    name="message moved",
    description=(
        "A message moved to another parent or package under the same short name; its full name, and so "
        "every field that refers to it, changed."
    ),
    category="SOURCE",
    request="major",
    response="major",
    reference=BUF_RULES,
    buf=("MESSAGE_NO_DELETE", "PACKAGE_MESSAGE_NO_DELETE"),
)
def message_moved(pair: MessagePair) -> Iterator[Hit]:
    if pair.moved_from is not None and pair.after is not None:
        yield Hit(f"Message {_q(pair.moved_from)} moved to {_q(pair.name)}.", pair.moved_from, pair.name)


def _json_format_hits(pair: MessagePair | EnumPair, noun: str) -> Iterator[Hit]:
    """As buf does, only losing ALLOW counts: gaining it adds a guarantee and takes none away."""
    b, a = pair.before_features.get("json_format"), pair.after_features.get("json_format")
    if pair.before is not None and pair.after is not None and b == "ALLOW" and a not in (None, "ALLOW"):
        yield Hit(f"{noun} {_q(pair.name)} JSON format support changed from {_q(b)} to {_q(a)}.", b, a)


@rule(
    id="MESSAGE_JSON_FORMAT_CHANGED",
    name="message JSON format support dropped",
    description=(
        "A message's json_format feature went from ALLOW to LEGACY_BEST_EFFORT (set in editions, or "
        "the message moved from a proto3 to a proto2 file): protoc no longer guarantees that its "
        "JSON mapping is well defined, so JSON clients may meet clashing keys."
    ),
    category="WIRE_JSON",
    request="major",
    response="major",
    reference=PROTO_FEATURES,
    buf=("MESSAGE_SAME_JSON_FORMAT",),
)
def message_json_format_changed(pair: MessagePair) -> Iterator[Hit]:
    yield from _json_format_hits(pair, "Message")


# -- handlers: fields -----------------------------------------------------------------------


def _both(pair: FieldPair) -> tuple[ir.Field, ir.Field] | None:
    if pair.before is None or pair.after is None:
        return None
    return pair.before, pair.after


@rule(
    id="FIELD_ADDED_REQUIRED",
    name="required field added",
    description=(
        "A new field the model needs: old clients do not send it, so in a request it breaks them; in a "
        "response old clients just ignore it."
    ),
    category="SEMANTIC",
    request="major",
    response="minor",
    reference=DESIGN,
)
def field_added_required(pair: FieldPair) -> Iterator[Hit]:
    a = pair.after
    if pair.before is None and a is not None and a.required:
        yield Hit(
            f"Field {_field_label(a)} was added to {_q(pair.message)} as required; clients of "
            "earlier releases do not send it.",
            None,
            a.type_text,
        )


@rule(
    id="FIELD_ADDED_OPTIONAL",
    name="optional field added",
    description="A new field that may be absent: old readers skip it as unknown.",
    category="SOURCE",
    request="minor",
    response="minor",
    reference=DESIGN,
)
def field_added_optional(pair: FieldPair) -> Iterator[Hit]:
    a = pair.after
    if pair.before is None and a is not None and not a.required:
        yield Hit(f"Field {_field_label(a)} was added to {_q(pair.message)}.", None, a.type_text)


@rule(
    id="FIELD_REMOVED",
    name="field removed",
    description=(
        "A field disappeared: in a response old clients lose a value they read; in a request the server "
        "just ignores what old clients still send."
    ),
    category="SEMANTIC",
    request="minor",
    response="major",
    reference=DESIGN,
    buf=("FIELD_NO_DELETE",),
)
def field_removed(pair: FieldPair) -> Iterator[Hit]:
    b = pair.before
    if b is not None and pair.after is None:
        yield Hit(f"Field {_field_label(b)} was removed from {_q(pair.message)}.", b.type_text, None)


@rule(
    id="FIELD_REMOVED_NUMBER_NOT_RESERVED",
    name="field removed without reserving its number",
    description=(
        "A field disappeared and its number is not reserved, so a later field may reuse it with another "
        "meaning."
    ),
    category="WIRE",
    request="major",
    response="major",
    reference=BUF_RULES,
    buf=("FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED",),
)
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


@rule(
    id="FIELD_REMOVED_NAME_NOT_RESERVED",
    name="field removed without reserving its name",
    description=(
        "A field disappeared and its name is not reserved, so a later field may reuse its JSON key with "
        "another meaning."
    ),
    category="WIRE_JSON",
    request="major",
    response="major",
    reference=BUF_RULES,
    buf=("FIELD_NO_DELETE_UNLESS_NAME_RESERVED",),
)
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


@rule(
    id="FIELD_RENAMED",
    name="field renamed",
    description=(
        "A field number changed name: the binary encoding is unchanged, the JSON key and the generated "
        "accessors are not."
    ),
    category="WIRE_JSON",
    request="major",
    response="major",
    reference=BUF_RULES,
    buf=("FIELD_SAME_NAME", "FIELD_SAME_JSON_NAME"),
)
def field_renamed(pair: FieldPair) -> Iterator[Hit]:
    both = _both(pair)
    if both and both[0].name != both[1].name:
        b, a = both
        yield Hit(
            f"Field {a.number} on {_q(pair.message)} changed name from {_q(b.name)} to {_q(a.name)}.",
            b.name,
            a.name,
        )


@rule(
    id="FIELD_JSON_NAME_CHANGED",
    name="field JSON name changed",
    description="A field kept its name but changed its json_name, so its JSON key changed.",
    category="WIRE_JSON",
    request="major",
    response="major",
    reference=BUF_RULES,
    buf=("FIELD_SAME_JSON_NAME",),
)
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


@rule(
    id="FIELD_TYPE_CHANGED_INCOMPATIBLE",
    name="field type changed incompatibly",
    description=(
        "A field changed to a type whose encoding old readers cannot read (or, in the registry, moved to a"
        " fresh number because of it)."
    ),
    category="WIRE",
    request="major",
    response="major",
    reference=PROTO_UPDATING,
    buf=("FIELD_WIRE_COMPATIBLE_TYPE", "FIELD_WIRE_JSON_COMPATIBLE_TYPE", "FIELD_SAME_TYPE"),
)
def field_type_changed_incompatible(pair: FieldPair) -> Iterator[Hit]:
    yield from _type_hit(pair, "incompatible")


@rule(
    id="FIELD_TYPE_CHANGED_JSON_INCOMPATIBLE",
    name="field type changed, JSON-incompatible",
    description=(
        "A field changed between wire-compatible types whose JSON forms differ (int32 and int64, string "
        "and bytes)."
    ),
    category="WIRE_JSON",
    request="major",
    response="major",
    reference=PROTO_JSON,
    buf=("FIELD_WIRE_JSON_COMPATIBLE_TYPE", "FIELD_SAME_TYPE"),
)
def field_type_changed_json_incompatible(pair: FieldPair) -> Iterator[Hit]:
    yield from _type_hit(pair, "json_incompatible", ", which keeps the binary encoding but changes the JSON one")


@rule(
    id="FIELD_TYPE_CHANGED_COMPATIBLE",
    name="field type changed compatibly",
    description=(
        "A field changed between wire- and JSON-compatible types (int32 and uint32, fixed32 and sfixed32, "
        "an enum moved with all its values): bytes still decode, but values may be reinterpreted and "
        "generated code changes."
    ),
    category="SOURCE",
    request="major",
    response="major",
    reference=PROTO_UPDATING,
    level="warning",
    buf=("FIELD_SAME_TYPE",),
)
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


@rule(
    id="FIELD_CARDINALITY_CHANGED",
    name="field cardinality changed",
    description="A field changed between singular, repeated and map.",
    category="WIRE",
    request="major",
    response="major",
    reference=PROTO_UPDATING,
    buf=("FIELD_WIRE_COMPATIBLE_CARDINALITY", "FIELD_WIRE_JSON_COMPATIBLE_CARDINALITY", "FIELD_SAME_CARDINALITY"),
)
def field_cardinality_changed(pair: FieldPair) -> Iterator[Hit]:
    both = _both(pair)
    if both and both[0].cardinality != both[1].cardinality and not _entry_swap(pair):
        b, a = both
        yield Hit(
            f"Field {_field_label(a, b)} on {_q(pair.message)} changed from {_q(b.type_text)} to {_q(a.type_text)}.",
            b.type_text,
            a.type_text,
        )


@rule(
    id="FIELD_CARDINALITY_CHANGED_JSON_INCOMPATIBLE",
    name="field cardinality changed, JSON-incompatible",
    description=(
        "A repeated field of a map's entry message became that map, or back: the same bytes, but JSON "
        "writes maps as objects and repeated fields as arrays."
    ),
    category="WIRE_JSON",
    request="major",
    response="major",
    reference=BUF_RULES,
    buf=("FIELD_WIRE_JSON_COMPATIBLE_CARDINALITY", "FIELD_SAME_CARDINALITY"),
)
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


@rule(
    id="FIELD_WIRE_REQUIRED_CHANGED",
    name="proto2 required field added, removed or changed",
    description=(
        "A proto2 required field appeared, disappeared or changed requiredness: a reader that expects it "
        "refuses messages without it."
    ),
    category="WIRE",
    request="major",
    response="major",
    reference=BUF_RULES,
    buf=(
        "MESSAGE_SAME_REQUIRED_FIELDS",
        "FIELD_WIRE_COMPATIBLE_CARDINALITY",
        "FIELD_WIRE_JSON_COMPATIBLE_CARDINALITY",
        "FIELD_SAME_CARDINALITY",
    ),
)
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


@rule(
    id="FIELD_DEFAULT_CHANGED",
    name="field default changed",
    description=(
        "A proto2 field changed its default value: readers of the two releases see different values for an"
        " absent field."
    ),
    category="WIRE",
    request="major",
    response="major",
    reference=BUF_RULES,
    buf=("FIELD_SAME_DEFAULT",),
)
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


@rule(
    id="FIELD_PRESENCE_CHANGED",
    name="field presence changed",
    description=(
        "A singular field changed between explicit presence (optional) and implicit presence; generated "
        "has-accessors change and zero values are sent or not."
    ),
    category="SOURCE",
    request="major",
    response="major",
    reference=BUF_RULES,
    buf=("FIELD_SAME_CARDINALITY",),
)
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


@rule(
    id="FIELD_MADE_REQUIRED",
    name="field made required",
    description="The model now requires a field that was optional: old clients may not send it.",
    category="SEMANTIC",
    request="major",
    response="minor",
    reference=DESIGN,
)
def field_made_required(pair: FieldPair) -> Iterator[Hit]:
    both = _both(pair)
    if both and not both[0].required and both[1].required:
        yield Hit(
            f"Field {_field_label(both[1], both[0])} on {_q(pair.message)} changed from optional to required.",
            "optional",
            "required",
        )


@rule(
    id="FIELD_MADE_OPTIONAL",
    name="field made optional",
    description="A field the model always set may now be absent: old clients may rely on it.",
    category="SEMANTIC",
    request="minor",
    response="major",
    reference=DESIGN,
)
def field_made_optional(pair: FieldPair) -> Iterator[Hit]:
    both = _both(pair)
    if both and both[0].required and not both[1].required:
        yield Hit(
            f"Field {_field_label(both[1], both[0])} on {_q(pair.message)} changed from required to optional.",
            "required",
            "optional",
        )


@rule(
    id="FIELD_ONEOF_CHANGED",
    name="field oneof changed",
    description="A field moved into, out of, or between oneofs; setting one member clears the others.",
    category="WIRE",
    request="major",
    response="major",
    reference=BUF_RULES,
    buf=("FIELD_SAME_ONEOF",),
)
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


# -- handlers: field contracts (registry releases: what pydantic checks beyond the type) -----------
# A request constraint that accepts fewer values refuses what old clients may send; a response one
# that accepts more may hand old clients values they never expected. docs/compat.md, "Contracts".

CONTRACTS = "docs/compat.md#contracts"
SEMVER_DEPRECATION = "https://semver.org/#spec-item-7"


def _contracts(pair: FieldPair) -> tuple[ir.Field, ir.Field, Contract, Contract] | None:
    """Both sides, when both record a contract and the field kept its shape (a type change is
    reported on its own, and bounds of another type do not compare)."""
    both = _both(pair)
    if both is None:
        return None
    b, a = both
    if b.contract is None or a.contract is None:
        return None
    if b.cardinality != a.cardinality or b.kind != a.kind or (b.integral != a.integral):
        return None
    return b, a, b.contract, a.contract


def _facet_hits(pair: FieldPair, relation: str, verb: str) -> Iterator[Hit]:
    found = _contracts(pair)
    if found is None:
        return
    b, a, cb, ca = found
    for change in compare_contracts(cb, ca, integral=a.integral):
        if change.relation == relation:
            note = f"; {change.note}" if change.note else ""
            yield Hit(
                f"Field {_field_label(a, b)} on {_q(pair.message)} {verb} its {change.facet} from "
                f"{_q(change.before)} to {_q(change.after)}{note}.",
                change.before,
                change.after,
            )


@rule(
    id="FIELD_CONSTRAINT_TIGHTENED",
    name="field constraint tightened",
    description=(
        "A bound, multiple, length or pattern now accepts fewer values: in a request the server refuses "
        "values old clients may send; in a response old clients only see values they already accepted."
    ),
    category="SEMANTIC",
    request="major",
    response="minor",
    reference=CONTRACTS,
)
def field_constraint_tightened(pair: FieldPair) -> Iterator[Hit]:
    yield from _facet_hits(pair, "tighter", "tightened")


@rule(
    id="FIELD_CONSTRAINT_LOOSENED",
    name="field constraint loosened",
    description=(
        "A bound, multiple, length or pattern now accepts more values: in a request old clients still "
        "send what was valid; in a response old clients may get values outside the range they rely on."
    ),
    category="SEMANTIC",
    request="minor",
    response="major",
    reference=CONTRACTS,
)
def field_constraint_loosened(pair: FieldPair) -> Iterator[Hit]:
    yield from _facet_hits(pair, "looser", "loosened")


@rule(
    id="FIELD_CONSTRAINT_CHANGED",
    name="field constraint changed",
    description=(
        "A multiple or a pattern changed so that neither the old nor the new one provably accepts "
        "everything the other does (for patterns, see what protoreg proves in docs/compat.md)."
    ),
    category="SEMANTIC",
    request="major",
    response="major",
    reference=CONTRACTS,
)
def field_constraint_changed(pair: FieldPair) -> Iterator[Hit]:
    yield from _facet_hits(pair, "changed", "changed")


@rule(
    id="FIELD_MODEL_DEFAULT_CHANGED",
    name="field default changed (pydantic)",
    description=(
        "The value the model uses when a field is absent changed: old clients that leave a request field "
        "out now get other answers. In a response the server sends the value, so old clients only see "
        "a different value."
    ),
    category="SEMANTIC",
    request="major",
    response="minor",
    reference=CONTRACTS,
)
def field_model_default_changed(pair: FieldPair) -> Iterator[Hit]:
    found = _contracts(pair)
    if found is None:
        return
    b, a, cb, ca = found
    if b.required or a.required or cb.default is None or ca.default is None or cb.default == ca.default:
        return  # requiredness changes have rules of their own
    yield Hit(
        f"Field {_field_label(a, b)} on {_q(pair.message)} changed its default from {cb.default} to "
        f"{ca.default}.",
        cb.default,
        ca.default,
    )


@rule(
    id="FIELD_DEPRECATED",
    name="field deprecated",
    description=(
        "A field is now marked deprecated (Field(deprecated=...), rendered [deprecated = true]); generated "
        "code warns its users. Semantic Versioning asks for a minor version when anything is deprecated."
    ),
    category="SOURCE",
    request="minor",
    response="minor",
    reference=SEMVER_DEPRECATION,
)
def field_deprecated(pair: FieldPair) -> Iterator[Hit]:
    found = _contracts(pair)
    if found is not None and found[2].deprecated is None and found[3].deprecated is not None:
        b, a = found[0], found[1]
        why = f": {found[3].deprecated}" if found[3].deprecated else ""
        yield Hit(f"Field {_field_label(a, b)} on {_q(pair.message)} was deprecated{why.rstrip('.')}.",
                  "not deprecated", "deprecated")


@rule(
    id="FIELD_DEPRECATION_REMOVED",
    name="field no longer deprecated",
    description="A deprecated field is supported again; generated code stops warning its users.",
    category="SOURCE",
    request="minor",
    response="minor",
    reference=SEMVER_DEPRECATION,
)
def field_deprecation_removed(pair: FieldPair) -> Iterator[Hit]:
    found = _contracts(pair)
    if found is not None and found[2].deprecated is not None and found[3].deprecated is None:
        yield Hit(f"Field {_field_label(found[1], found[0])} on {_q(pair.message)} is no longer deprecated.",
                  "deprecated", "not deprecated")


@rule(
    id="FIELD_REMOVED_WITHOUT_DEPRECATION",
    name="field removed without deprecation",
    description=(
        "A field was removed that the release before did not mark deprecated, so its clients had no "
        "warning. Deprecate it first (Field(deprecated=...)) and remove it in a later release. A warning "
        "that needs no bump of its own: the removal itself is FIELD_REMOVED."
    ),
    category="SEMANTIC",
    request="none",
    response="none",
    reference=CONTRACTS,
    level="warning",
)
def field_removed_without_deprecation(pair: FieldPair) -> Iterator[Hit]:
    b = pair.before
    if b is not None and pair.after is None and b.contract is not None and b.contract.deprecated is None:
        yield Hit(
            f"Field {_field_label(b)} was removed from {_q(pair.message)} without being deprecated in "
            f"release {pair.before_view.label or 'before'}; mark it Field(deprecated=\"...\") in a release "
            "before the one that removes it.",
            "not deprecated",
            None,
        )


def _rename_key(f: ir.Field) -> tuple[object, ...]:
    contract = f.contract
    shape = (f.type_key, f.required)
    if contract is None:
        return shape
    return (*shape, tuple(contract.constraints.items()), contract.choices)


@rule(
    id="FIELD_POSSIBLY_RENAMED",
    name="field possibly renamed",
    description=(
        "A release removes a field and adds one of the same type and constraints. If it is a rename, "
        "declaring renamed_from keeps the field's number; protoreg never assumes it. A hint that needs no "
        "bump of its own."
    ),
    category="SEMANTIC",
    request="none",
    response="none",
    reference=CONTRACTS,
    level="warning",
)
def field_possibly_renamed(pair: MessagePair) -> Iterator[Hit]:
    bm, am = pair.before, pair.after
    if bm is None or am is None or pair.after_view.qualified:
        return  # registry releases only: renamed_from is a pydantic declaration
    removed = [f for f in bm.fields if am.field_by_number(f.number) is None and am.field_by_name(f.name) is None]
    added = [f for f in am.fields if bm.field_by_number(f.number) is None and bm.field_by_name(f.name) is None]
    for old in removed:
        matches = [f for f in added if _rename_key(f) == _rename_key(old)]
        if len(matches) != 1 or sum(_rename_key(o) == _rename_key(old) for o in removed) != 1:
            continue  # a hint must be unambiguous
        new = matches[0]
        yield Hit(
            f"Field {_field_label(old)} was removed from {_q(pair.name)} and {_field_label(new)} added with the "
            f"same type and constraints; if it is a rename, declare it as "
            f"`{renamed_from_line(new, old.name, pair.name)}` so the field keeps its number.",
            old.name,
            new.name,
        )


@rule(
    id="CONTRACT_NOT_RECORDED",
    name="contract not recorded",
    description=(
        "The release compared against was registered before protoreg recorded field contracts (defaults, "
        "bounds, lengths, patterns, deprecation), so changes to them cannot be checked against it."
    ),
    category="SEMANTIC",
    request="none",
    response="none",
    reference=CONTRACTS,
    level="warning",
)
def contract_not_recorded(pair: ReleasePair) -> Iterator[Hit]:
    before = pair.before_view.packages
    after = pair.after_view.packages
    if before and after and not before[0].contracts_recorded and after[0].contracts_recorded:
        yield Hit(
            f"{pair.model} {pair.before} was registered before protoreg recorded field contracts, so changes "
            "to defaults, bounds, lengths, patterns and deprecation since then are not checked.",
            "not recorded",
            "recorded",
        )


# -- handlers: enums ------------------------------------------------------------------------


@rule(
    id="ENUM_ADDED",
    name="enum added",
    description="A new enum type appeared.",
    category="SOURCE",
    request="minor",
    response="minor",
    reference=BUF_RULES,
)
def enum_added(pair: EnumPair) -> Iterator[Hit]:
    if pair.before is None and pair.after is not None:
        yield Hit(f"Enum {_q(pair.name)} was added.", None, pair.name)


@rule(
    id="ENUM_REMOVED",
    name="enum removed",
    description="An enum type disappeared; generated code that names it breaks.",
    category="SOURCE",
    request="minor",
    response="major",
    reference=BUF_RULES,
    buf=("ENUM_NO_DELETE", "PACKAGE_ENUM_NO_DELETE"),
)
def enum_removed(pair: EnumPair) -> Iterator[Hit]:
    if pair.before is not None and pair.after is None:
        yield Hit(f"Enum {_q(pair.name)} was removed.", pair.name, None)


@rule(
    id="ENUM_OPENNESS_CHANGED",
    name="enum changed between open and closed",
    description=(
        "An enum changed between open and closed (its enum_type feature in editions, or a move "
        "between proto3 and proto2 files): a closed enum parses a value it does not know into the "
        "unknown fields and leaves the field unset, an open one keeps it in the field; generated "
        "code differs too."
    ),
    category="SOURCE",
    request="major",
    response="major",
    reference=PROTO_ENUMS,
    buf=("ENUM_SAME_TYPE",),
)
def enum_openness_changed(pair: EnumPair) -> Iterator[Hit]:
    before, after = pair.before_features.get("enum_type"), pair.after_features.get("enum_type")
    if pair.before is not None and pair.after is not None and before and after and before != after:
        b, a = before.lower(), after.lower()
        yield Hit(f"Enum {_q(pair.name)} changed from {b} to {a}.", b, a)


@rule(
    id="ENUM_JSON_FORMAT_CHANGED",
    name="enum JSON format support dropped",
    description=(
        "An enum's json_format feature went from ALLOW to LEGACY_BEST_EFFORT (set in editions, or the "
        "enum moved from a proto3 to a proto2 file): protoc no longer guarantees that its value "
        "names map to JSON without clashes."
    ),
    category="WIRE_JSON",
    request="major",
    response="major",
    reference=PROTO_FEATURES,
    buf=("ENUM_SAME_JSON_FORMAT",),
)
def enum_json_format_changed(pair: EnumPair) -> Iterator[Hit]:
    yield from _json_format_hits(pair, "Enum")


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(_q(n) for n in names)


@rule(
    id="ENUM_VALUE_ADDED",
    name="enum value added",
    description=(
        "A new enum value: servers accept it, but old clients receiving it in a response see an unknown "
        "value."
    ),
    category="SEMANTIC",
    request="minor",
    response="minor",
    reference=PROTO_UPDATING,
    level="warning_in_responses",
)
def enum_value_added(pair: EnumValuePair) -> Iterator[Hit]:
    if not pair.before and pair.after:
        note = "; clients of earlier releases will see an unknown value" if pair.direction != "request" else ""
        yield Hit(
            f"Enum value {_names(pair.after)} ({pair.number}) was added to {_q(pair.enum)}{note}.",
            None,
            pair.after[0],
        )


@rule(
    id="ENUM_VALUE_REMOVED",
    name="enum value removed",
    description="An enum value disappeared: old clients may still send it in requests.",
    category="SEMANTIC",
    request="major",
    response="minor",
    reference=DESIGN,
    buf=("ENUM_VALUE_NO_DELETE",),
)
def enum_value_removed(pair: EnumValuePair) -> Iterator[Hit]:
    if pair.before and not pair.after:
        yield Hit(
            f"Enum value {_names(pair.before)} ({pair.number}) was removed from {_q(pair.enum)}.",
            pair.before[0],
            None,
        )


@rule(
    id="ENUM_VALUE_REMOVED_NUMBER_NOT_RESERVED",
    name="enum value removed without reserving its number",
    description="An enum value disappeared and its number is not reserved.",
    category="WIRE",
    request="major",
    response="major",
    reference=BUF_RULES,
    buf=("ENUM_VALUE_NO_DELETE_UNLESS_NUMBER_RESERVED",),
)
def enum_value_removed_number_not_reserved(pair: EnumValuePair) -> Iterator[Hit]:
    e = pair.after_enum
    if pair.before and not pair.after and e is not None and not any(pair.number in r for r in e.reserved_numbers):
        yield Hit(
            f"Enum value {_names(pair.before)} ({pair.number}) was removed from {_q(pair.enum)} without "
            f"reserving the number {pair.number}.",
            str(pair.number),
            None,
        )


@rule(
    id="ENUM_VALUE_REMOVED_NAME_NOT_RESERVED",
    name="enum value removed without reserving its name",
    description="An enum value disappeared and its name is not reserved.",
    category="WIRE_JSON",
    request="major",
    response="major",
    reference=BUF_RULES,
    buf=("ENUM_VALUE_NO_DELETE_UNLESS_NAME_RESERVED",),
)
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


@rule(
    id="ENUM_VALUE_RENAMED",
    name="enum value renamed",
    description="An enum number changed name; JSON carries enum values by name.",
    category="WIRE_JSON",
    request="major",
    response="major",
    reference=BUF_RULES,
    buf=("ENUM_VALUE_SAME_NAME",),
)
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


@rule(
    id="RESERVED_NUMBER_REMOVED",
    name="reserved number removed",
    description="A message or enum stopped reserving a number, so it may be reused.",
    category="WIRE",
    request="major",
    response="major",
    reference=BUF_RULES,
    buf=("RESERVED_MESSAGE_NO_DELETE", "RESERVED_ENUM_NO_DELETE"),
)
def reserved_number_removed(pair: ReservedPair) -> Iterator[Hit]:
    after_ranges = pair.after.reserved_numbers + ir.compress_ranges(pair.restored_numbers)
    if covered(pair.before.reserved_numbers, after_ranges):
        return
    for r in uncovered(pair.before.reserved_numbers, after_ranges):
        yield Hit(f"{pair.kind.capitalize()} {_q(pair.name)} no longer reserves {r}.", str(r), None)


@rule(
    id="RESERVED_NAME_REMOVED",
    name="reserved name removed",
    description="A message or enum stopped reserving a name, so it may be reused.",
    category="WIRE",
    request="major",
    response="major",
    reference=BUF_RULES,
    buf=("RESERVED_MESSAGE_NO_DELETE", "RESERVED_ENUM_NO_DELETE"),
)
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


@rule(
    id="RESERVED_NUMBER_REUSED",
    name="reserved number reused",
    description=(
        "A number reserved in any earlier release is used again by something other than the field or value"
        " that had it."
    ),
    category="WIRE",
    request="major",
    response="major",
    reference=PROTO_UPDATING,
)
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


@rule(
    id="RESERVED_NAME_REUSED",
    name="reserved name reused",
    description=(
        "A name reserved in any earlier release is used again by something other than the field or value "
        "that had it."
    ),
    category="WIRE_JSON",
    request="major",
    response="major",
    reference=PROTO_JSON,
)
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


@rule(
    id="FIELD_NUMBER_REUSED",
    name="field number reused",
    description=(
        "A number that an earlier release used for another field (another name or an incompatible type) is"
        " used again; pairwise tools see only an added field."
    ),
    category="WIRE",
    request="major",
    response="major",
    reference=PROTO_UPDATING,
)
def field_number_reused(pair: HistoryPair) -> Iterator[Hit]:
    h = pair.number_holder
    if pair.kind != "message" or pair.number_reserved is not None or h is None or pair.after is None:
        return
    renamed = h.name in pair.renamed_from  # a declared rename keeps the number: the same field
    if (h.name != pair.name and not renamed) or (
        h.field is not None and not _fields_compatible(h.field, pair.after, pair)
    ):
        yield Hit(
            f"{_item(pair)} reuses number {pair.number}, which {_holder_text(h)} had in {h.label}.",
            _holder_text(h),
            f"{pair.name} ({pair.after.proto_type})",
        )


@rule(
    id="FIELD_NAME_REUSED",
    name="field name reused with another type",
    description=(
        "A field name that an earlier release used with an incompatible type is used again; JSON clients "
        "of that release send values of the old type."
    ),
    category="WIRE_JSON",
    request="major",
    response="major",
    reference=PROTO_JSON,
)
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


@rule(
    id="VERSION_NOT_BUMPED",
    name="version not bumped",
    description="The schema changed but the model version did not; a release is immutable.",
    category="SEMANTIC",
    request="patch",
    response="patch",
    reference=CARGO_SEMVER,
)
def version_not_bumped(pair: ReleasePair) -> Iterator[Hit]:
    if pair.before == pair.after and pair.schema_changed:
        yield Hit(
            f"{pair.model} {pair.after} is already registered with a different schema; bump the version.",
            pair.before,
            pair.after,
        )


@rule(
    id="VERSION_WENT_BACKWARDS",
    name="version went backwards",
    description="The declared version is lower than the newest registered release; versions only go forward.",
    category="SEMANTIC",
    request="major",
    response="major",
    reference=CARGO_SEMVER,
    level="error",
)
def version_went_backwards(pair: ReleasePair) -> Iterator[Hit]:
    if parse_version(pair.after) < parse_version(pair.newest):
        yield Hit(
            f"{pair.model} {pair.after} is lower than the newest release {pair.newest}; choose a "
            f"version above {pair.newest}.",
            pair.newest,
            pair.after,
        )


RULES: tuple[Rule, ...] = tuple(_DECLARED.values())
"""Every rule, in declaration order."""
RULES_BY_ID: dict[str, Rule] = dict(_DECLARED)
