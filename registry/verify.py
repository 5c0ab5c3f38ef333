"""Verification: every invariant of DESIGN.md checked over a whole registry.

``verify_registry`` reads every model's releases, snapshots, allocation ledger, reservation
rows and lineage and returns problems; it never writes. It is what an operator runs after a crash, a restore
or a migration, and what the crash tests use to prove that a killed ``register`` left nothing
half-written.

It also asks the database engine to check itself (``PRAGMA integrity_check`` on SQLite; on
PostgreSQL every table is read through, which fails on a damaged page where data checksums are
on), turns a row it cannot decode into a reported problem rather than a traceback, and compiles
the served rendering of every major line with protoc (``PROTOC_REFUSED``: a release registered
before registration compiled its rendering; registering a fixed release of that major line
replaces the file).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

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
    notes: tuple[str, ...] = ()
    """What could not be checked, and why (printed, not a failure)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """What ``protoreg verify --format json`` prints."""
        return {
            "ok": self.ok,
            "models": self.models,
            "releases": self.releases,
            "notes": list(self.notes),
            "problems": [
                {"check": p.check, "model": p.model, "version": p.version, "message": p.message} for p in self.problems
            ],
        }


UNDECODABLE = (DBAPIError, ValueError, KeyError, TypeError, AttributeError)
"""What reading a damaged row raises: the driver's error, or bad JSON (``JSONDecodeError`` is a
``ValueError``) and snapshots of the wrong shape."""


def _unreadable(model: str, error: BaseException) -> Problem:
    original = getattr(error, "orig", None) or error
    detail = (str(original).strip().splitlines() or [type(original).__name__])[0]
    return Problem("UNREADABLE", model, "", f"cannot be read ({type(original).__name__}: {detail[:200]}); restore "
                                           "the registry from a backup or from its text form (protoreg import)")


def verify_registry(registry: Registry) -> VerifyReport:
    problems, notes = _check_engine(registry)
    try:
        models = registry.model_names()
    except UNDECODABLE as error:
        return VerifyReport(0, 0, (*problems, _unreadable("", error)), notes)
    count = 0
    served: list[tuple[str, str, str, str]] = []  # (model, version, proto path, stored text)
    for model in models:
        try:
            releases = registry.releases(model)
            count += len(releases)
            problems += _check_model(model, releases, registry.history(model), registry.reservations(model))
            problems += _check_lineage(model, releases, registry.stored_lineage(model))
        except UNDECODABLE as error:
            problems.append(_unreadable(model, error))
            continue
        last: dict[int, ReleaseInfo] = {}
        for release in releases:
            last[release.package.major] = release
        served += [(model, r.version, r.package.proto_path, r.proto_text) for _, r in sorted(last.items())]
    problems += _check_compiles(served)
    return VerifyReport(len(models), count, tuple(problems), notes)


def _check_engine(registry: Registry) -> tuple[list[Problem], tuple[str, ...]]:
    """The engine's own integrity check: SQLite's, or a full read of every table elsewhere."""
    dialect = registry.engine.dialect.name
    try:
        with registry.engine.connect() as connection:
            if dialect == "sqlite":
                rows = [str(r[0]) for r in connection.exec_driver_sql("PRAGMA integrity_check(20)")]
                if rows == ["ok"]:
                    return [], ()
                return [Problem("DATABASE_DAMAGED", "", "", f"SQLite integrity_check: {'; '.join(rows)[:500]}; "
                                "restore the registry from a backup or from its text form (protoreg import)")], ()
            from .store import Base

            for table in Base.metadata.sorted_tables:
                connection.execute(text(f'SELECT count(*) FROM (SELECT * FROM "{table.name}") AS t'))
            return [], (f"{dialect}: every table was read through; for a page-level check use the database's "
                        "own tools (PostgreSQL: data checksums and the amcheck extension)",)
    except DBAPIError as error:
        return [_unreadable("", error)], ()


def _check_compiles(served: list[tuple[str, str, str, str]]) -> list[Problem]:
    """Every served rendering must compile: one protoc run for all, then one per file to name the culprits."""
    from .protoc import ProtocError, compile_texts

    if not served:
        return []
    try:
        compile_texts({path: proto for _, _, path, proto in served})
        return []
    except ProtocError:
        pass
    problems = []
    for model, version, path, proto in served:
        try:
            compile_texts({path: proto})
        except ProtocError as error:
            detail = " ".join(str(error).split(": ", 1)[-1].split())[:300]
            problems.append(Problem(
                "PROTOC_REFUSED", model, version,
                f"protoc refuses the stored rendering {path} ({detail}); serving proto_versions/ fails until a "
                "fixed release of this major line is registered (see README, Repairing a release)"))
    return problems


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
