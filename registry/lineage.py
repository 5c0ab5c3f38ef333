"""The lineage of a model: a compact summary of every snapshot ever registered, for the checker.

The compatibility checker is transitive: for each field and enum value of a new release it asks
"which earlier snapshot last held this number (or this name), and with what type?" and "which
earlier snapshot last reserved it?". Walking every past snapshot answers that, at a cost that
grows with every release. A :class:`Lineage` answers the same questions from a summary that
grows only with the numbers and names a model has ever used: snapshots are folded into it oldest
first, and each fold overwrites what an older snapshot said.

The store keeps one lineage per model next to its releases and folds each new release in; the
engine builds one from views when it is given explicit snapshots. Both give exactly the answers a
newest-first walk over the same snapshots gives. Nothing here touches a database.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from . import ir

FORMAT = 1
"""Bumped whenever the serialised form changes; a stored lineage of another format is rebuilt."""


class Holding(NamedTuple):
    """A number or name held in a snapshot: the snapshot's label and the field (None for enum values).

    A named tuple rather than a frozen dataclass: a lineage read from the database builds one per
    number and per name of a model, on every check.
    """

    label: str
    name: str
    number: int
    field: ir.Field | None


@dataclass
class ScopeLineage:
    """What one message or enum key held and reserved across the folded snapshots."""

    by_number: dict[int, Holding] = field(default_factory=dict)
    by_name: dict[str, Holding] = field(default_factory=dict)
    reserved_names: dict[str, str] = field(default_factory=dict)
    # Disjoint inclusive ranges sorted by start, each labelled with the newest snapshot that
    # reserved it; kept as ranges so "reserved 100 to max" never has to be expanded.
    reserved_starts: list[int] = field(default_factory=list)
    reserved_ranges: list[tuple[int, int, str]] = field(default_factory=list)

    def paint(self, start: int, end: int, label: str) -> None:
        """Mark ``start..end`` as reserved by ``label``, over whatever older snapshots said."""
        kept: list[tuple[int, int, str]] = []
        for s, e, old in self.reserved_ranges:
            if e < start or s > end:
                kept.append((s, e, old))
                continue
            if s < start:
                kept.append((s, start - 1, old))
            if e > end:
                kept.append((end + 1, e, old))
        kept.append((start, end, label))
        kept.sort()
        self.reserved_ranges = kept
        self.reserved_starts = [s for s, _, _ in kept]

    def reserved_number(self, number: int) -> str | None:
        index = bisect.bisect_right(self.reserved_starts, number) - 1
        if index >= 0:
            start, end, label = self.reserved_ranges[index]
            if start <= number <= end:
                return label
        return None


@dataclass
class Lineage:
    """Every folded snapshot, summarised per message or enum key. Fold oldest first."""

    scopes: dict[str, ScopeLineage] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)

    # folding --------------------------------------------------------------------------------

    def fold(self, label: str, messages: Mapping[str, ir.Message], enums: Mapping[str, ir.Enum]) -> None:
        """Fold one snapshot, newer than every snapshot folded so far.

        As in the checker's walk, a key that is both a message and an enum in one snapshot is
        read as the message.
        """
        self.labels.append(label)
        for key, message in messages.items():
            scope = self.scopes.setdefault(key, ScopeLineage())
            numbers: dict[int, Holding] = {}
            names: dict[str, Holding] = {}
            for f in message.fields:
                holding = Holding(label, f.name, f.number, f)
                numbers.setdefault(f.number, holding)
                names.setdefault(f.name, holding)
            self._fold_scope(scope, label, numbers, names, message.reserved_numbers, message.reserved_names)
        for key, enum in enums.items():
            if key in messages:
                continue
            scope = self.scopes.setdefault(key, ScopeLineage())
            numbers = {}
            names = {}
            for v in enum.values:
                holding = Holding(label, v.name, v.number, None)
                numbers.setdefault(v.number, holding)
                names.setdefault(v.name, holding)
            self._fold_scope(scope, label, numbers, names, enum.reserved_numbers, enum.reserved_names)

    @staticmethod
    def _fold_scope(
        scope: ScopeLineage,
        label: str,
        numbers: dict[int, Holding],
        names: dict[str, Holding],
        reserved_numbers: tuple[ir.ReservedRange, ...],
        reserved_names: tuple[str, ...],
    ) -> None:
        scope.by_number.update(numbers)
        scope.by_name.update(names)
        for r in reserved_numbers:
            scope.paint(r.start, r.end, label)
        for name in reserved_names:
            scope.reserved_names[name] = label

    def fold_package(self, label: str, package: ir.Package) -> None:
        """Fold a registry snapshot (unqualified names: keys are names inside the package)."""
        self.fold(label, {m.name: m for m in package.messages}, {e.name: e for e in package.enums})

    # questions --------------------------------------------------------------------------------

    def holder(self, key: str, number: int | None, name: str | None) -> Holding | None:
        """The newest holder of ``number`` (or, when it is None, of ``name``) in ``key``."""
        scope = self.scopes.get(key)
        if scope is None:
            return None
        if number is not None:
            return scope.by_number.get(number)
        return scope.by_name.get(name or "")

    def reserved(self, key: str, number: int | None, name: str | None) -> str | None:
        """The label of the newest snapshot that reserved ``number`` (or else ``name``) in ``key``."""
        scope = self.scopes.get(key)
        if scope is None:
            return None
        if number is not None:
            found = scope.reserved_number(number)
            if found is not None:
                return found
        if name is not None:
            return scope.reserved_names.get(name)
        return None

    # storage ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        fields: list[list[Any]] = []
        field_ids: dict[ir.Field, int] = {}

        def field_id(f: ir.Field | None) -> int | None:
            if f is None:
                return None
            if f not in field_ids:
                field_ids[f] = len(fields)
                fields.append(_field_to_list(f))
            return field_ids[f]

        def holding(h: Holding) -> list[Any]:
            return [h.label, h.name, h.number, field_id(h.field)]

        scopes = {
            key: {
                "numbers": [holding(h) for _, h in sorted(s.by_number.items())],
                "names": [holding(h) for _, h in sorted(s.by_name.items())],
                "reserved_numbers": [list(r) for r in s.reserved_ranges],
                "reserved_names": sorted([n, label] for n, label in s.reserved_names.items()),
            }
            for key, s in sorted(self.scopes.items())
        }
        return {"format": FORMAT, "labels": list(self.labels), "fields": fields, "scopes": scopes}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Lineage:
        fields = [_field_from_list(item) for item in data["fields"]]

        def holding(item: list[Any]) -> Holding:
            label, name, number, fid = item
            return Holding(label, name, int(number), None if fid is None else fields[fid])

        lineage = cls(labels=list(data["labels"]))
        for key, s in data["scopes"].items():
            scope = ScopeLineage()
            for item in s["numbers"]:
                h = holding(item)
                scope.by_number[h.number] = h
            for item in s["names"]:
                h = holding(item)
                scope.by_name[h.name] = h
            scope.reserved_ranges = [(int(a), int(b), str(label)) for a, b, label in s["reserved_numbers"]]
            scope.reserved_starts = [a for a, _, _ in scope.reserved_ranges]
            scope.reserved_names = {n: label for n, label in s["reserved_names"]}
            lineage.scopes[key] = scope
        return lineage


def lineage_of(snapshots: Iterable[tuple[str, ir.Package]]) -> Lineage:
    """The lineage of registry snapshots given as ``(label, package)``, oldest first."""
    lineage = Lineage()
    for label, package in snapshots:
        lineage.fold_package(label, package)
    return lineage


def _field_to_list(f: ir.Field) -> list[Any]:
    return [f.name, f.number, f.type, f.kind, f.label, f.key_type, f.required, f.description, f.json_name]


def _field_from_list(item: list[Any]) -> ir.Field:
    name, number, type_, kind, label, key_type, required, description, json_name = item
    return ir.Field(name, int(number), type_, kind, label, key_type, bool(required), description, json_name)
