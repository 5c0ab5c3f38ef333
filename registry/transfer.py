"""Moving models between registries: ``protoreg export`` and ``protoreg import``.

Any registry to any other (SQLite, PostgreSQL, a text-form directory): :func:`transfer` reads
whole models from the source as :class:`~protoreg.registry.records.ModelRecord`\\s and writes them
into the target in one transaction, so an import is all or nothing. A model the target lacks is
added; one it holds with the same content is left alone (an import can run twice); one whose
releases in the target are the first releases of the source's gets the rest. Anything else is a
conflict, and the whole import is refused with a sentence per model: two registries never merge
their histories silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import ProtoregError
from .records import ModelRecord
from .retry import retry
from .store import Registry


class ImportConflictError(ProtoregError):
    """The target holds another history of a model being imported; nothing was written."""


@dataclass(frozen=True)
class Moved:
    """What an import did with one model: ``added`` (new in the target), ``extended`` (releases
    appended) or ``unchanged``; ``versions`` are the releases it wrote."""

    model: str
    outcome: str
    versions: tuple[str, ...]


def transfer(source: Registry, target: Registry, models: Sequence[str] = (), *, source_name: str = "the source",
             target_name: str = "the target") -> list[Moved]:
    """Copy ``models`` (default: every model) from ``source`` into ``target``, all or nothing."""
    names = list(dict.fromkeys(models)) or source.model_names()
    records = [source.model_record(name) for name in names]
    return retry(lambda: _import_once(target, records, source_name, target_name))


def _import_once(target: Registry, records: list[ModelRecord], source_name: str, target_name: str) -> list[Moved]:
    with target.transaction() as tx:
        plans: list[tuple[ModelRecord, Moved]] = []
        conflicts: list[str] = []
        for record in records:
            existing = tx.model_record(record.name)
            problem = _conflict(existing, record, source_name, target_name)
            if problem:
                conflicts.append(problem)
                continue
            if existing is None:
                plans.append((record, Moved(record.name, "added", record.versions)))
            elif existing == record:
                plans.append((record, Moved(record.name, "unchanged", ())))
            else:
                plans.append((record, Moved(record.name, "extended", record.versions[len(existing.releases):])))
        if conflicts:
            raise ImportConflictError(
                f"Nothing was imported: {'; '.join(conflicts)}. An import only adds models, or releases after "
                "the ones the target already has; import into another registry, or export the other way"
            )
        for record, moved in plans:
            if moved.outcome != "unchanged":
                tx.replace_model(record)
        return [moved for _, moved in plans]


def _conflict(existing: ModelRecord | None, record: ModelRecord, source_name: str, target_name: str) -> str:
    if existing is None or existing == record:
        return ""
    mine = {r.version: r for r in existing.releases}
    for ours, theirs in zip(existing.releases, record.releases, strict=False):
        if ours.version != theirs.version:
            return (f"{target_name} has {record.name} {ours.version} where {source_name} has {theirs.version} "
                    "(two histories of one model)")
        if ours != theirs:
            what = "schema" if ours.fingerprint != theirs.fingerprint else "content (date, snapshot or reservations)"
            return f"{record.name} {ours.version} has another {what} in {target_name} than in {source_name}"
    if len(existing.releases) > len(record.releases):
        extra = [v for v in mine if v not in record.versions]
        return f"{target_name} has {record.name} {', '.join(extra)}, which {source_name} lacks"
    if len(existing.releases) == len(record.releases):
        return (f"{record.name} has the same releases in {target_name} and {source_name} but another ledger or "
                "description")
    return ""
