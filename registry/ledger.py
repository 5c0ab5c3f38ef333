"""The field ledger: every field number of a model, by message, across its releases.

Rows are the numbers a message or enum ever held as a field or value, or reserved (by message
or enum, in order of first appearance, then by number); columns are releases, oldest first. Each
cell says what that release holds under the number and how it differs from the release before:

- ``added``: the number holds a field, and the release before had none there;
- ``renamed``: same type, another name (an explicit rename keeps the number);
- ``changed``: the type, label or requiredness changed (a wire-compatible change keeps the number);
- ``unchanged``: as in the release before;
- ``removed``: the release before held a field there and this one does not (its number is
  reserved, unless the whole message went away);
- ``reserved``: reserved, as in the release before;
- ``absent``: nothing there yet (or the message does not exist in this release).

The ledger is built from :func:`protoreg.registry.fieldmap.field_map`, the JSON that ``protoreg fields``
prints, so each column holds exactly what ``fields --version V --format json`` shows. Library
code: returns data, never prints, needs no database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

State = Literal["added", "renamed", "changed", "unchanged", "removed", "reserved", "absent"]
STATES: tuple[State, ...] = ("added", "renamed", "changed", "unchanged", "removed", "reserved", "absent")
PRESENT_STATES: frozenset[str] = frozenset({"added", "renamed", "changed", "unchanged"})

Facts = tuple[str, str, str, bool]
"""What a release holds under a number: name, type, label and requiredness."""


@dataclass(frozen=True)
class Cell:
    """One release's view of one number.

    ``name``, ``type``, ``label`` and ``required`` are what the release holds when the state is
    present (added, renamed, changed, unchanged); for ``removed`` and ``reserved`` they are the
    last field the number held (empty when it never held one). ``before`` is the old name of a
    renamed field or the old type of a changed one. ``reserved`` says whether the release's
    field map lists the number as reserved.
    """

    state: State
    name: str = ""
    type: str = ""
    label: str = ""
    required: bool = False
    reserved: bool = False
    before: str = ""

    @property
    def present(self) -> bool:
        return self.state in PRESENT_STATES

    @property
    def facts(self) -> Facts | None:
        """What the release holds under the number (None when it holds no field there)."""
        return (self.name, self.type, self.label, self.required) if self.present else None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cell:
        return cls(data["state"], data["name"], data["type"], data["label"], bool(data["required"]),
                   bool(data["reserved"]), data["before"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "name": self.name,
            "type": self.type,
            "label": self.label,
            "required": self.required,
            "reserved": self.reserved,
            "before": self.before,
        }


@dataclass(frozen=True)
class Row:
    number: int
    cells: tuple[Cell, ...]

    @property
    def eventful(self) -> bool:
        """Whether anything happened to the number after its first appearance."""
        return any(c.state in ("renamed", "changed", "removed") for c in self.cells)


@dataclass(frozen=True)
class Section:
    """One message (``kind`` ``message``) or enum (``enum``) of the model.

    ``exists`` says, per release, whether the release has the message or enum at all;
    ``reserved_names`` lists, per release, the names it reserves there.
    """

    kind: Literal["message", "enum"]
    name: str
    rows: tuple[Row, ...]
    exists: tuple[bool, ...]
    reserved_names: tuple[tuple[str, ...], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "exists": list(self.exists),
            "reserved_names": [list(names) for names in self.reserved_names],
            "rows": [{"number": r.number, "cells": [c.to_dict() for c in r.cells]} for r in self.rows],
        }


@dataclass(frozen=True)
class Ledger:
    versions: tuple[str, ...]
    sections: tuple[Section, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"versions": list(self.versions), "sections": [s.to_dict() for s in self.sections]}


@dataclass(frozen=True)
class _Entry:
    """What one release holds in one scope: field or value facts by number, reservations."""

    items: dict[int, Facts]
    reserved_numbers: frozenset[int]
    reserved_names: tuple[str, ...]


def _entries(field_map: dict[str, Any], kind: Literal["message", "enum"]) -> dict[str, _Entry]:
    out: dict[str, _Entry] = {}
    if kind == "message":
        for m in field_map["messages"]:
            items = {f["number"]: (f["name"], f["type"], f["label"], bool(f["required"])) for f in m["fields"]}
            out[m["name"]] = _Entry(items, frozenset(m["reserved_numbers"]), tuple(m["reserved_names"]))
    else:
        for e in field_map["enums"]:
            items = {v["number"]: (v["name"], "", "", False) for v in e["values"]}
            out[e["name"]] = _Entry(items, frozenset(e["reserved_numbers"]), tuple(e["reserved_names"]))
    return out


def build_ledger(field_maps: Sequence[dict[str, Any]]) -> Ledger:
    """The ledger of one model from the field maps of its releases, oldest first."""
    versions = tuple(str(fm["version"]) for fm in field_maps)
    sections: list[Section] = []
    kinds: tuple[Literal["message", "enum"], ...] = ("message", "enum")
    for kind in kinds:
        per_release = [_entries(fm, kind) for fm in field_maps]
        names: list[str] = []
        for entries in per_release:
            names.extend(n for n in entries if n not in names)
        for name in names:
            sections.append(_section(kind, name, [entries.get(name) for entries in per_release]))
    return Ledger(versions, tuple(sections))


def _section(kind: Literal["message", "enum"], name: str, entries: list[_Entry | None]) -> Section:
    numbers = sorted({n for e in entries if e is not None for n in (*e.items, *e.reserved_numbers)})
    rows = []
    for number in numbers:
        cells: list[Cell] = []
        last: Facts | None = None  # the last field the number held
        previous: Facts | None = None  # what the release before held
        for entry in entries:
            held = entry.items.get(number) if entry is not None else None
            reserved = entry is not None and number in entry.reserved_numbers
            state, before = transition(previous, held, reserved)
            shown = held or last or ("", "", "", False)
            cells.append(Cell(state, *shown, reserved=reserved, before=before) if state != "absent" else Cell("absent"))
            previous = held
            last = held or last
        rows.append(Row(number, tuple(cells)))
    return Section(
        kind=kind,
        name=name,
        rows=tuple(rows),
        exists=tuple(e is not None for e in entries),
        reserved_names=tuple(e.reserved_names if e is not None else () for e in entries),
    )


def transition(previous: Facts | None, held: Facts | None, reserved: bool) -> tuple[State, str]:
    """The state of a number that held ``previous`` and now holds ``held`` (None: no field).

    Returns the state and what it was before: the old name of a renamed field, the old type of
    a changed one (prefixed with the old name when that changed too), else "".
    """
    if held is not None:
        if previous is None:
            return "added", ""
        if previous[1:] != held[1:]:
            before = describe_type(previous)
            return "changed", f"{previous[0]}: {before}" if previous[0] != held[0] else before
        if previous[0] != held[0]:
            return "renamed", previous[0]
        return "unchanged", ""
    if previous is not None:
        return "removed", ""
    return ("reserved" if reserved else "absent"), ""


def describe_type(facts: Facts) -> str:
    """How a field's type reads: ``repeated double``, ``map<string, int64>``, ``int64 (required)``."""
    _, type_, label, required = facts
    prefix = "repeated " if label == "repeated" else ""
    return f"{prefix}{type_}{' (required)' if required else ''}"
