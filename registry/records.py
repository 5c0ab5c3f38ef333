"""A model's whole registry content as plain data: what ``export`` and ``import`` move.

A :class:`ModelRecord` is everything a registry database holds about one model that is not
derived: the model row, every release (date, fingerprint, the protoreg that registered it, the
changes, the schema tree, the numbered snapshot, the rendered text, the reservation rows) and the
allocation ledger (every number ever handed out, per message and enum, with the release that first
had it), and how the first release was adopted from an existing API, if it was. Row ids are not
part of it and neither is the lineage, which is rebuilt from the snapshots. ``store`` turns rows
into records and back; ``textform`` writes records as text.
Records compare equal exactly when two registries hold the same model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

ScopeKind = Literal["message", "enum"]


@dataclass(frozen=True)
class ReservationRecord:
    """One reservation row: a number range (``start``..``end``) or a ``name``, in one scope."""

    kind: ScopeKind
    scope: str
    start: int | None = None
    end: int | None = None
    name: str | None = None


@dataclass(frozen=True)
class ReleaseRecord:
    version: str
    created_at: datetime
    fingerprint: str
    registered_by: str
    """The protoreg version that registered the release."""
    changes: tuple[str, ...]
    reservations: tuple[ReservationRecord, ...]
    schema: Mapping[str, Any]
    snapshot: Mapping[str, Any]
    proto_text: str


@dataclass(frozen=True)
class AllocationRecord:
    """One number ever allocated in a message or enum. ``since`` is the version of the release that
    first had it; ``names`` every name it had (fields only) and ``type_key`` its latest wire shape."""

    number: int
    name: str
    active: bool
    since: str
    names: tuple[str, ...] = ()
    type_key: str = ""


@dataclass(frozen=True)
class ScopeRecord:
    kind: ScopeKind
    name: str
    allocations: tuple[AllocationRecord, ...]


@dataclass(frozen=True)
class AdoptionRecord:
    """The model's first release was adopted from an existing API: ``version`` is that release,
    ``source`` the file, ``plan`` the adoption as data (``protoreg.registry.adopt.record.Adoption``)."""

    version: str
    source: str
    plan: Mapping[str, Any]


@dataclass(frozen=True)
class ModelRecord:
    name: str
    display_name: str
    description: str
    created_at: datetime
    releases: tuple[ReleaseRecord, ...]
    ledger: tuple[ScopeRecord, ...]
    """Messages then enums, each in the order the registry created them."""
    adoption: AdoptionRecord | None = None

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(r.version for r in self.releases)


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime (as SQLite returns them) is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
