"""Verification: every invariant of DESIGN.md checked over a whole registry.

``verify_registry`` reads every model's releases, snapshots, allocation ledger, reservation
rows and lineage and returns problems; it never writes. It is what an operator runs after a crash, a restore
or a migration, and what the crash tests use to prove that a killed ``register`` left nothing
half-written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import ir
from .lineage import FORMAT as LINEAGE_FORMAT
from .lineage import lineage_of
from .naming import GENERATED_MESSAGES
from .numbering import History
from .render import render_package
from .store import Registry, ReleaseInfo
from .typemap import type_key_compatible


@dataclass(frozen=True)
class Problem:
    """One broken invariant. ``check`` is a stable UPPER_SNAKE identifier."""

    check: str
    model: str
    version: str
    message: str

    def describe(self) -> str:
        where = f"{self.model} {self.version}".strip()
        return f"{self.check}: {where}: {self.message}"


@dataclass(frozen=True)
class VerifyReport:
    models: int
    releases: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """What ``protoreg verify --format json`` prints."""
        return {
            "ok": self.ok,
            "models": self.models,
            "releases": self.releases,
            "problems": [
                {"check": p.check, "model": p.model, "version": p.version, "message": p.message} for p in self.problems
            ],
        }


def verify_registry(registry: Registry) -> VerifyReport:
    problems: list[Problem] = []
    models = registry.model_names()
    count = 0
    for model in models:
        releases = registry.releases(model)
        count += len(releases)
        problems += _check_model(model, releases, registry.history(model), registry.reservations(model))
        problems += _check_lineage(model, releases, registry.stored_lineage(model))
    return VerifyReport(len(models), count, tuple(problems))


def _check_model(
    model: str,
    releases: list[ReleaseInfo],
    history: History,
    reservations: dict[str, set[tuple[str, str, str]]],
) -> list[Problem]:
    problems: list[Problem] = []

    def add(check: str, version: str, text: str) -> None:
        problems.append(Problem(check, model, version, text))

    if not releases:
        add("MODEL_WITHOUT_RELEASE", "", "the model row exists but no release does (a half-written registration)")
    for before, after in zip(releases, releases[1:], strict=False):
        if not before.parsed_version < after.parsed_version:
            add("VERSION_ORDER", after.version, f"comes after {before.version} but is not higher")

    seen: dict[tuple[str, int], tuple[str, str]] = {}
    ever_numbers: dict[str, set[int]] = {}
    ever_names: dict[str, set[str]] = {}
    used_in_snapshots: set[tuple[str, str, int]] = set()
    for release in releases:
        version = release.version
        if render_package(release.package) != release.proto_text:
            add("RENDER_MISMATCH", version, "the stored .proto text differs from a fresh render of the snapshot")
        for message in release.package.messages:
            if message.name in GENERATED_MESSAGES:
                continue
            numbers = [f.number for f in message.fields]
            if len(numbers) != len(set(numbers)):
                add("NUMBER_DUPLICATED", version, f'"{message.name}" uses a number twice: {sorted(numbers)}')
            reserved = set(ir.expand_ranges(message.reserved_numbers))
            for f in message.fields:
                used_in_snapshots.add(("message", message.name, f.number))
                if f.number in ir.RESERVED_FIELD_NUMBERS or not 1 <= f.number <= ir.FIELD_NUMBER_MAX:
                    add("NUMBER_OUT_OF_RANGE", version, f'Field "{f.name}" on "{message.name}" has number {f.number}')
                if f.number in reserved or f.name in message.reserved_names:
                    add("RESERVED_IN_USE", version, f'Field "{f.name}" ({f.number}) on "{message.name}" is reserved')
                key = (message.name, f.number)
                if key in seen and not type_key_compatible(seen[key][1], f.type_key):
                    add("NUMBER_RETYPED", version,
                        f'Number {f.number} on "{message.name}" went from "{seen[key][1]}" to "{f.type_key}"')
                seen[key] = (f.name, f.type_key)
            ever_numbers.setdefault(message.name, set()).update(numbers)
            ever_names.setdefault(message.name, set()).update(f.name for f in message.fields)
            missing_numbers = ever_numbers[message.name] - set(numbers) - reserved
            if missing_numbers:
                add("RESERVATION_MISSING", version,
                    f'"{message.name}" does not reserve retired numbers {sorted(missing_numbers)}')
            missing_names = ever_names[message.name] - {f.name for f in message.fields} - set(message.reserved_names)
            if missing_names:
                add("RESERVATION_MISSING", version,
                    f'"{message.name}" does not reserve retired names {sorted(missing_names)}')
            stored = reservations.get(version, set())
            expected = {("message", message.name, str(r)) for r in message.reserved_numbers}
            expected |= {("message", message.name, f'"{n}"') for n in message.reserved_names}
            if not expected <= stored:
                add("RESERVATION_ROWS", version, f'reservation rows of "{message.name}" do not match its snapshot')
        for enum in release.package.enums:
            values = [v.number for v in enum.values]
            if len(values) != len(set(values)) or enum.value_by_number(0) is None:
                add("ENUM_VALUES", version, f'"{enum.name}" has duplicate numbers or no zero value')
            for v in enum.values:
                if v.number:
                    used_in_snapshots.add(("enum", enum.name, v.number))
                key = (f"enum:{enum.name}", v.number)
                if key in seen and seen[key][0] != v.name:
                    add("ENUM_VALUE_RENAMED", version,
                        f'Value {v.number} of "{enum.name}" was "{seen[key][0]}" and is now "{v.name}"')
                seen[key] = (v.name, "")

    # The ledger: every allocation belongs to a release, and matches the newest one.
    latest = releases[-1].package if releases else None
    for (kind, name), scope in history.scopes.items():
        for number, slot in scope.slots.items():
            if (kind, name, number) not in used_in_snapshots:
                add("ORPHANED_ALLOCATION", "", f'{kind} "{name}" number {number} ({slot.name}) is in no release')
            if latest is None:
                continue
            active = _active_in(latest, kind, name, number)
            if active != slot.active:
                add("LEDGER_STALE", latest.version,
                    f'{kind} "{name}" number {number} is {"" if slot.active else "not "}active in the ledger '
                    f"but {'' if active else 'not '}in the newest release")
    for kind, name, number in sorted(used_in_snapshots):
        if number not in history.scope(kind, name).slots:
            add("ALLOCATION_MISSING", "", f'{kind} "{name}" number {number} is in a release but not in the ledger')
    return problems


def _check_lineage(model: str, releases: list[ReleaseInfo], stored: tuple[int, int, Any] | None) -> list[Problem]:
    """The stored lineage, when it claims to cover every release, must be what the snapshots give.

    A lineage that is missing or behind is not a problem: it is rebuilt when needed.
    """
    if stored is None or not releases:
        return []
    seq, format_, lineage = stored
    if seq != len(releases) or format_ != LINEAGE_FORMAT:
        return []
    if lineage.to_dict() != lineage_of((r.version, r.package) for r in releases).to_dict():
        return [Problem("LINEAGE_MISMATCH", model, releases[-1].version,
                        "the stored lineage differs from the one the snapshots give; delete the model's row "
                        "from the lineages table and it is rebuilt from the snapshots")]
    return []


def _active_in(package: ir.Package, kind: str, name: str, number: int) -> bool:
    if kind == "message":
        message = package.message(name)
        return message is not None and message.field_by_number(number) is not None
    enum = package.enum(name)
    return enum is not None and enum.value_by_number(number) is not None
