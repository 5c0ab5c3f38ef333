"""A snapshot seen by the checker: IR packages indexed by full name, with RPC directions.

A :class:`View` indexes the messages, enums and services of one snapshot (one registry
release, or one tree of ``.proto`` files) and knows which messages and enums travel in requests,
in responses or in both. How a field's type changed (:func:`type_change`) is read from the type
mapping (``registry/typemap.py``), which also serves numbering.

Registry snapshots are *unqualified*: one package, names inside it, so ``iris_model.v1`` and
``iris_model.v2`` pair message by message. Descriptor snapshots are *qualified*: many packages,
keys are full names (``acme.v1.Order.Line``) and field types are full names already.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .. import ir
from ..typemap import TypeChange, scalar_change, worst_change
from .findings import Direction


def default_json_name(name: str) -> str:
    """protoc's default ``json_name``: underscores dropped, the next letter upper-cased."""
    out: list[str] = []
    upper = False
    for char in name:
        if char == "_":
            upper = True
        elif upper:
            out.append(char.upper())
            upper = False
        else:
            out.append(char)
    return "".join(out)


def json_name(f: ir.Field) -> str:
    return f.json_name or default_json_name(f.name)


def short_name(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def presence(f: ir.Field) -> str:
    return "implicit" if f.label == "singular" else "explicit"


@dataclass
class View:
    """One snapshot, indexed. ``label`` names it in messages (a version or a directory)."""

    label: str
    packages: tuple[ir.Package, ...]
    qualified: bool
    messages: dict[str, ir.Message] = field(default_factory=dict)
    enums: dict[str, ir.Enum] = field(default_factory=dict)
    services: dict[str, ir.Service] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # element key -> file
    file_packages: dict[str, str] = field(default_factory=dict)  # file -> package
    facts: dict[str, Mapping[int, ir.FieldFacts]] = field(default_factory=dict)  # message key -> number -> facts
    features: dict[str, Mapping[str, str]] = field(default_factory=dict)  # key -> resolved features
    lines: dict[str, int] = field(default_factory=dict)  # element or member key -> line in its file
    request: set[str] = field(default_factory=set)
    response: set[str] = field(default_factory=set)

    def key(self, package: ir.Package, name: str) -> str:
        return f"{package.package}.{name}" if self.qualified and package.package else name

    def direction(self, key: str) -> Direction:
        """``request``/``response`` for what travels one way only; ``both`` otherwise.

        Messages no RPC reaches get ``both``: nothing says which way they travel, so the checker
        assumes the strictest.
        """
        req, resp = key in self.request, key in self.response
        if req and not resp:
            return "request"
        if resp and not req:
            return "response"
        return "both"

    def file_of(self, key: str) -> str:
        return self.files.get(key, "")

    def line_of(self, path: str) -> int | None:
        """The line of ``path`` (``pkg.Msg.field``), or of the nearest element around it."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path.rpartition(".")[0]
        return None

    def package_of(self, key: str) -> str:
        return self.file_packages.get(self.files.get(key, ""), "")


def build_view(packages: Iterable[ir.Package], *, qualified: bool, label: str = "") -> View:
    packages = tuple(packages)
    view = View(label=label, packages=packages, qualified=qualified)
    for package in packages:
        file_name = package.proto_path
        view.file_packages[file_name] = package.package
        facts = package.facts
        features = package.features
        for name, line in package.lines.items():
            view.lines[view.key(package, name)] = line
        for message in package.messages:
            key = view.key(package, message.name)
            view.messages[key] = message
            view.files[key] = file_name
            if message.name in facts:
                view.facts[key] = facts[message.name]
            if message.name in features:
                view.features[key] = features[message.name]
        for enum in package.enums:
            key = view.key(package, enum.name)
            view.enums[key] = enum
            view.files[key] = file_name
            if enum.name in features:
                view.features[key] = features[enum.name]
        for service in package.services:
            key = view.key(package, service.name)
            view.services[key] = service
            view.files[key] = file_name
    roots_in = [m.input_type for s in view.services.values() for m in s.methods]
    roots_out = [m.output_type for s in view.services.values() for m in s.methods]
    view.request = _reachable(view, roots_in)
    view.response = _reachable(view, roots_out)
    return view


def _reachable(view: View, roots: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = [r for r in roots if r in view.messages]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for f in view.messages[name].fields:
            if f.kind == "enum" and f.type in view.enums:
                seen.add(f.type)
            elif f.kind == "message" and f.type in view.messages and f.type not in seen:
                todo.append(f.type)
    return seen


def type_change(before: ir.Field, after: ir.Field, bview: View, aview: View) -> TypeChange:
    """How the element type (and map key) of a field changed, from the wire's point of view."""
    change = _element_change(before, after, bview, aview)
    if before.label == "map" and after.label == "map" and before.key_type and after.key_type:
        change = worst_change(change, scalar_change(before.key_type, after.key_type))
    return change


def _element_change(before: ir.Field, after: ir.Field, bview: View, aview: View) -> TypeChange:
    if before.kind != after.kind:
        return "incompatible"
    if before.kind == "scalar":
        return scalar_change(before.type, after.type)
    if before.type == after.type:
        return "same"
    if before.kind == "enum":
        # As buf does: another enum of the same short name that keeps every old value is the
        # same enum moved; anything else is a different enum.
        old, new = bview.enums.get(before.type), aview.enums.get(after.type)
        if old is not None and new is not None and short_name(before.type) == short_name(after.type):
            new_values = {(v.number, v.name) for v in new.values}
            if all((v.number, v.name) in new_values for v in old.values):
                return "compatible"
    return "incompatible"


def covered(numbers: tuple[ir.ReservedRange, ...], ranges: tuple[ir.ReservedRange, ...]) -> bool:
    """Whether every number of ``numbers`` lies in ``ranges`` (without expanding huge ranges)."""
    merged = _merge(ranges)
    for r in numbers:
        if not any(m.start <= r.start and r.end <= m.end for m in merged):
            return False
    return True


def _merge(ranges: tuple[ir.ReservedRange, ...]) -> list[ir.ReservedRange]:
    out: list[ir.ReservedRange] = []
    for r in sorted(ranges, key=lambda r: r.start):
        if out and r.start <= out[-1].end + 1:
            out[-1] = ir.ReservedRange(out[-1].start, max(out[-1].end, r.end))
        else:
            out.append(r)
    return out


def in_ranges(number: int, ranges: tuple[ir.ReservedRange, ...]) -> bool:
    return any(number in r for r in ranges)


def uncovered(before: tuple[ir.ReservedRange, ...], after: tuple[ir.ReservedRange, ...]) -> list[ir.ReservedRange]:
    """The parts of ``before`` that ``after`` does not reserve (ranges, never expanded)."""
    merged = _merge(after)
    out: list[ir.ReservedRange] = []
    for r in _merge(before):
        start = r.start
        for m in merged:
            if m.end < start or m.start > r.end:
                continue
            if m.start > start:
                out.append(ir.ReservedRange(start, m.start - 1))
            start = max(start, m.end + 1)
            if start > r.end:
                break
        if start <= r.end:
            out.append(ir.ReservedRange(start, r.end))
    return out
