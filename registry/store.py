"""The registry store: SQLAlchemy tables, and the only module that talks SQL.

Tables: ``models``; ``releases`` (one immutable row per model version, holding the schema, the
numbered IR snapshot and the rendered text); ``messages`` and ``enums`` (numbering scopes);
``fields`` and ``enum_values`` (the allocation ledger: one row per number ever handed out, unique
per scope, so the database itself refuses a duplicate); ``reservations`` (what each release
reserves); ``lineages`` (per model, a summary of every snapshot for the checker's history rules,
see :mod:`protoreg.registry.lineage`; derived data, rebuilt from the snapshots whenever it is missing or
behind). Alembic owns the schema (``migrations/``, see :mod:`protoreg.registry.upgrade`); opening a
database is :func:`protoreg.registry.database.open_registry`.

A :class:`Registry` answers reads, each in its own transaction. A :class:`Transaction` is one
read-write transaction for registration (:mod:`protoreg.registry.registration` composes it with numbering,
the gate and rendering): :meth:`Transaction.lock_model` takes the model's write lock (SQLite
already holds the database's from ``BEGIN IMMEDIATE``; elsewhere ``SELECT ... FOR UPDATE`` on the
model row) and keeps it until commit. Reads inside it are targeted, so a registration's cost does
not grow with the number of releases: the release with the same version, the newest release and
the lineage, and no other snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    delete,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from . import __version__, ir
from .errors import NotFoundError
from .faults import crash_point
from .lineage import FORMAT as LINEAGE_FORMAT
from .lineage import Lineage, lineage_of
from .numbering import History, Scope, Slot
from .records import (
    AdoptionRecord,
    AllocationRecord,
    ModelRecord,
    ReleaseRecord,
    ReservationRecord,
    ScopeKind,
    ScopeRecord,
    utc,
)
from .versioning import Version, parse_version

if TYPE_CHECKING:
    from .adopt.record import Adoption

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class ModelRow(Base):
    __tablename__ = "models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    releases: Mapped[list[ReleaseRow]] = relationship(back_populates="model", order_by="ReleaseRow.seq")


class ReleaseRow(Base):
    __tablename__ = "releases"
    __table_args__ = (
        UniqueConstraint("model_id", "version", name="uq_releases_model_version"),
        UniqueConstraint("model_id", "seq", name="uq_releases_model_seq"),
        # Covers the queries registration runs (every version in order, the highest version)
        # without reading release rows, which hold a schema, a snapshot and a .proto each.
        Index("ix_releases_model_order", "model_id", "seq", "version", "major", "minor", "patch"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(100))
    major: Mapped[int] = mapped_column(Integer)
    minor: Mapped[int] = mapped_column(Integer)
    patch: Mapped[int] = mapped_column(Integer)
    prerelease: Mapped[str] = mapped_column(String(100), default="")
    fingerprint: Mapped[str] = mapped_column(String(64))
    schema_json: Mapped[str] = mapped_column(Text)
    snapshot_json: Mapped[str] = mapped_column(Text)
    proto_text: Mapped[str] = mapped_column(Text)
    changes_json: Mapped[str] = mapped_column(Text, default="[]")
    protoreg_version: Mapped[str] = mapped_column(String(50), default=__version__)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    model: Mapped[ModelRow] = relationship(back_populates="releases")


class MessageRow(Base):
    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("model_id", "name", name="uq_messages_model_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(300))
    fields: Mapped[list[FieldRow]] = relationship(order_by="FieldRow.number")


class FieldRow(Base):
    """One field number ever allocated in a message; ``name``/``type_key`` are the latest."""

    __tablename__ = "fields"
    __table_args__ = (UniqueConstraint("message_id", "number", name="uq_fields_message_number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(300))
    names_json: Mapped[str] = mapped_column(Text, default="[]")
    type_key: Mapped[str] = mapped_column(String(600))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    first_release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"))


class EnumRow(Base):
    __tablename__ = "enums"
    __table_args__ = (UniqueConstraint("model_id", "name", name="uq_enums_model_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(300))
    values: Mapped[list[EnumValueRow]] = relationship(order_by="EnumValueRow.number")


class EnumValueRow(Base):
    __tablename__ = "enum_values"
    __table_args__ = (UniqueConstraint("enum_id", "number", name="uq_enum_values_enum_number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enum_id: Mapped[int] = mapped_column(ForeignKey("enums.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(300))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    first_release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"))


class ReservationRow(Base):
    """A number or a name that a release reserves in one message or enum."""

    __tablename__ = "reservations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"), index=True)
    scope_kind: Mapped[str] = mapped_column(String(10))
    scope_name: Mapped[str] = mapped_column(String(300))
    number_start: Mapped[int | None] = mapped_column(Integer, nullable=True)
    number_end: Mapped[int | None] = mapped_column(Integer, nullable=True)
    name: Mapped[str | None] = mapped_column(String(300), nullable=True)


class AdoptionRow(Base):
    """A model whose first release was adopted from an existing API (``protoreg adopt``):
    ``plan_json`` is its :class:`~protoreg.registry.adopt.record.Adoption`."""

    __tablename__ = "adoptions"
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(Text)
    plan_json: Mapped[str] = mapped_column(Text)


class LineageRow(Base):
    """The model's :class:`~protoreg.registry.lineage.Lineage` with every release up to ``release_seq`` folded in."""

    __tablename__ = "lineages"
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    release_seq: Mapped[int] = mapped_column(Integer)
    format: Mapped[int] = mapped_column(Integer)
    lineage_json: Mapped[str] = mapped_column(Text)


# -- public results ------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseInfo:
    model: str
    version: str
    created_at: datetime
    fingerprint: str
    changes: tuple[str, ...]
    package: ir.Package
    proto_text: str
    schema_json: str = field(compare=False, default="{}", repr=False)

    @cached_property
    def schema(self) -> dict[str, Any]:
        """The schema tree the release was registered with (parsed when first asked for)."""
        return dict(json.loads(self.schema_json))

    @property
    def parsed_version(self) -> Version:
        return parse_version(self.version)


@dataclass(frozen=True)
class ReleaseLine:
    """What the checker needs of a model's releases, read without parsing every snapshot.

    ``versions`` lists every release, oldest first; ``newest`` is the highest version (the first
    registered among equals, as :func:`~protoreg.registry.compat.engine.check_release` picks it);
    ``lineage`` summarises every release in registration order. ``load_all`` parses every
    release (only for checks against an older baseline); inside a registration it must be called
    before the gate returns.
    """

    model: str
    versions: tuple[str, ...]
    newest: ReleaseInfo | None
    lineage: Lineage
    load_all: Callable[[], list[ReleaseInfo]]

    @property
    def newest_is_last(self) -> bool:
        """Whether the newest release is also the last registered (the registry's invariant)."""
        return self.newest is None or self.versions[-1] == self.newest.version


# -- the registry --------------------------------------------------------------------------


class Registry:
    """One registry database. Methods return data; none of them print."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self.engine) as session, session.begin():
            yield session

    # reading -----------------------------------------------------------------------------

    def model_names(self) -> list[str]:
        with self._session() as session:
            return list(session.scalars(select(ModelRow.name).order_by(ModelRow.name)))

    def releases(self, model: str) -> list[ReleaseInfo]:
        """Every release of ``model``, oldest first."""
        with self._session() as session:
            row = self._model_row(session, model)
            return [_release_info(model, r) for r in row.releases]

    def release(self, model: str, version: str | None = None) -> ReleaseInfo:
        """One release (the last registered when ``version`` is None)."""
        with self._session() as session:
            row = self._model_row(session, model)
            query = select(ReleaseRow).where(ReleaseRow.model_id == row.id)
            if version is None:
                found = session.scalar(query.order_by(ReleaseRow.seq.desc()).limit(1))
                if found is None:
                    raise NotFoundError(f'Model "{model}" has no releases yet; register it first')
                return _release_info(model, found)
            found = session.scalar(query.where(ReleaseRow.version == version))
            if found is not None:
                return _release_info(model, found)
            known = [v for _, v in _versions(session, row.id)]
        if not known:
            raise NotFoundError(f'Model "{model}" has no releases yet; register it first')
        raise NotFoundError(f'Model "{model}" has no release "{version}" (releases: {", ".join(known)})')

    def served_packages(self) -> list[ir.Package]:
        """The newest release of every major line of every model: what proto_versions/ holds."""
        packages = []
        with self._session() as session:
            for model in session.scalars(select(ModelRow).order_by(ModelRow.name)):
                last: dict[int, int] = {}  # major -> id of its last registered release
                query = (
                    select(ReleaseRow.major, ReleaseRow.id)
                    .where(ReleaseRow.model_id == model.id)
                    .order_by(ReleaseRow.seq)
                )
                for major, release_id in session.execute(query):
                    last[major] = release_id
                for major in sorted(last):
                    snapshot = session.scalar(select(ReleaseRow.snapshot_json).where(ReleaseRow.id == last[major]))
                    packages.append(ir.package_from_dict(json.loads(snapshot or "{}")))
        return packages

    def release_line(self, model: str) -> ReleaseLine | None:
        """The model's :class:`ReleaseLine` for a check, or None when it is not registered."""
        with self._session() as session:
            row = session.scalar(select(ModelRow).where(ModelRow.name == model))
            if row is None:
                return None
            line = _release_line(session, model, row.id)
            # Outside the session the full list can only be read through a new one.
            return ReleaseLine(line.model, line.versions, line.newest, line.lineage, lambda: self.releases(model))

    def stored_lineage(self, model: str) -> tuple[int, int, Lineage] | None:
        """The model's stored lineage as ``(release_seq, format, lineage)``, or None when there is none."""
        with self._session() as session:
            row = self._model_row(session, model)
            stored = session.get(LineageRow, row.id)
            if stored is None:
                return None
            return stored.release_seq, stored.format, Lineage.from_dict(json.loads(stored.lineage_json))

    def adoption(self, model: str) -> Adoption | None:
        """How ``model``'s first release was adopted from an existing API (None when it was not)."""
        with self._session() as session:
            model_id = session.scalar(select(ModelRow.id).where(ModelRow.name == model))
            return None if model_id is None else _load_adoption(session, model_id)

    def history(self, model: str) -> History:
        with self._session() as session:
            row = session.scalar(select(ModelRow).where(ModelRow.name == model))
            return _load_history(session, row.id) if row else History()

    def reservations(self, model: str) -> dict[str, set[tuple[str, str, str]]]:
        """The reservation rows of every release, as ``{version: {(kind, scope, item)}}``.

        ``item`` is a range as written in a .proto (``"3"``, ``"5 to 7"``) or a quoted name.
        """
        out: dict[str, set[tuple[str, str, str]]] = {}
        with self._session() as session:
            row = self._model_row(session, model)
            for release in row.releases:
                items = out.setdefault(release.version, set())
                for r in session.scalars(select(ReservationRow).where(ReservationRow.release_id == release.id)):
                    if r.name is not None:
                        items.add((r.scope_kind, r.scope_name, f'"{r.name}"'))
                    elif r.number_start is not None and r.number_end is not None:
                        items.add((r.scope_kind, r.scope_name, str(ir.ReservedRange(r.number_start, r.number_end))))
        return out

    def versions(self, model: str) -> tuple[str, ...] | None:
        """The versions of ``model``'s releases in registration order (None when it is not registered);
        one query on the covering index, no snapshot read."""
        with self._session() as session:
            model_id = session.scalar(select(ModelRow.id).where(ModelRow.name == model))
            return None if model_id is None else tuple(v for _, v in _versions(session, model_id))

    def model_record(self, model: str) -> ModelRecord:
        """Everything the registry holds about ``model``, as plain data (see :mod:`protoreg.registry.records`)."""
        with self._session() as session:
            return _model_record(session, self._model_row(session, model))

    def _model_row(self, session: Session, model: str) -> ModelRow:
        row = session.scalar(select(ModelRow).where(ModelRow.name == model))
        if row is None:
            known = ", ".join(session.scalars(select(ModelRow.name).order_by(ModelRow.name))) or "none"
            raise NotFoundError(f'Model "{model}" is not in the registry (models: {known})')
        return row

    # writing -----------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One read-write transaction: committed when the block ends, rolled back if it raises."""
        with Session(self.engine) as session, session.begin():
            yield Transaction(session)


@dataclass(frozen=True)
class NewRelease:
    """Everything a registration writes for one release, already numbered and rendered."""

    display_name: str
    description: str
    version: str
    parsed_version: Version
    fingerprint: str
    schema: dict[str, Any]
    package: ir.Package
    proto_text: str
    changes: tuple[str, ...]
    history: History  # the whole ledger after numbering this release
    lineage: Lineage  # every release folded in, this one last


class Transaction:
    """A read-write transaction of :meth:`Registry.transaction`. Methods take the model's row id
    from :meth:`lock_model`; nothing is visible to others until the transaction commits."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.touched: set[str] = set()
        """The models this transaction locked or wrote (a text-form registry writes them back)."""

    def lock_model(self, model: str, display_name: str, description: str, *, create: bool) -> int | None:
        """The model's row id, holding its write lock until commit; None when it is not registered
        (created first when ``create``)."""
        session = self.session
        self.touched.add(model)
        if session.get_bind().dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert

            if create:
                session.execute(
                    insert(ModelRow)
                    .values(name=model, display_name=display_name, description=description, created_at=_now())
                    .on_conflict_do_nothing(index_elements=["name"])
                )
            return session.scalar(select(ModelRow.id).where(ModelRow.name == model).with_for_update())
        row = session.scalar(select(ModelRow).where(ModelRow.name == model))
        if row is None and create:
            row = ModelRow(name=model, display_name=display_name, description=description, created_at=_now())
            session.add(row)
            session.flush()
        return None if row is None else row.id

    def model_record(self, model: str) -> ModelRecord | None:
        """Everything the registry holds about ``model`` (None when it has no such model), read
        under the model's write lock on PostgreSQL."""
        query = select(ModelRow).where(ModelRow.name == model)
        if self.session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        row = self.session.scalar(query)
        return None if row is None else _model_record(self.session, row)

    def replace_model(self, record: ModelRecord) -> None:
        """Write ``record`` as the model's whole content, removing whatever the model had before."""
        self.touched.add(record.name)
        self.session.execute(delete(ModelRow).where(ModelRow.name == record.name))  # cascades to every row
        self.session.expire_all()
        _write_model_record(self.session, record)

    def release(self, model_id: int, model: str, version: str) -> ReleaseInfo | None:
        """The release registered under exactly ``version``, if any."""
        found = self.session.scalar(
            select(ReleaseRow).where(ReleaseRow.model_id == model_id, ReleaseRow.version == version)
        )
        return None if found is None else _release_info(model, found)

    def release_line(self, model_id: int, model: str) -> ReleaseLine:
        return _release_line(self.session, model, model_id)

    def history(self, model_id: int) -> History:
        return _load_history(self.session, model_id)

    def adoption(self, model_id: int) -> Adoption | None:
        return _load_adoption(self.session, model_id)

    def add_adoption(self, model_id: int, adoption: Adoption) -> None:
        """Record that the model's release ``adoption.version`` (written already) was adopted."""
        release_id = self.session.scalar(
            select(ReleaseRow.id).where(ReleaseRow.model_id == model_id, ReleaseRow.version == adoption.version))
        assert release_id is not None, "add_release() wrote the adopted release in this transaction"
        self.session.add(AdoptionRow(model_id=model_id, release_id=release_id, source=adoption.source,
                                     plan_json=json.dumps(adoption.to_dict(), sort_keys=True)))
        self.session.flush()

    def add_release(self, model_id: int, release: NewRelease) -> None:
        """Write the release row, the updated ledger, the reservations and the lineage."""
        session = self.session
        model = session.get(ModelRow, model_id)
        assert model is not None, "lock_model() returned this id in this transaction"
        model.display_name = release.display_name
        model.description = release.description
        seq = (session.scalar(select(ReleaseRow.seq).where(ReleaseRow.model_id == model_id)
                              .order_by(ReleaseRow.seq.desc()).limit(1)) or 0) + 1
        version = release.parsed_version
        row = ReleaseRow(
            model_id=model_id,
            seq=seq,
            version=release.version,
            major=version.major,
            minor=version.minor,
            patch=version.patch,
            prerelease=version.prerelease or "",
            fingerprint=release.fingerprint,
            schema_json=json.dumps(release.schema, sort_keys=True),
            snapshot_json=json.dumps(ir.package_to_dict(release.package), sort_keys=True),
            proto_text=release.proto_text,
            changes_json=json.dumps(list(release.changes)),
            created_at=_now(),
        )
        session.add(row)
        session.flush()
        crash_point("release_written")
        _save_history(session, model_id, release.history, row.id)
        session.flush()
        crash_point("ledger_written")
        _save_reservations(session, row.id, release.package)
        _save_lineage(session, model_id, seq, release.lineage)
        session.flush()


def _load_adoption(session: Session, model_id: int) -> Adoption | None:
    from .adopt.record import Adoption

    row = session.get(AdoptionRow, model_id)
    return None if row is None else Adoption.from_dict(json.loads(row.plan_json))


def _release_info(model: str, row: ReleaseRow) -> ReleaseInfo:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return ReleaseInfo(
        model=model,
        version=row.version,
        created_at=created,
        fingerprint=row.fingerprint,
        changes=tuple(json.loads(row.changes_json)),
        package=ir.package_from_dict(json.loads(row.snapshot_json)),
        proto_text=row.proto_text,
        schema_json=row.schema_json,
    )


def _versions(session: Session, model_id: int) -> list[tuple[int, str]]:
    query = select(ReleaseRow.seq, ReleaseRow.version).where(ReleaseRow.model_id == model_id).order_by(ReleaseRow.seq)
    return [(seq, version) for seq, version in session.execute(query)]


def _release_line(session: Session, model: str, model_id: int) -> ReleaseLine:
    # One pass over the covering index ix_releases_model_order: every version in order, and the
    # highest (numeric parts compared here, pre-release and build metadata by semver for the few
    # releases that share the highest numeric parts; the first registered wins among equals).
    rows = session.execute(
        select(ReleaseRow.id, ReleaseRow.version, ReleaseRow.major, ReleaseRow.minor, ReleaseRow.patch)
        .where(ReleaseRow.model_id == model_id)
        .order_by(ReleaseRow.seq)
    ).all()
    versions = [version for _, version, *_ in rows]
    newest = None
    if rows:
        top = max((major, minor, patch) for _, _, major, minor, patch in rows)
        candidates = [(release_id, version) for release_id, version, *numbers in rows if tuple(numbers) == top]
        best_id, _ = max(candidates, key=lambda c: parse_version(c[1]))
        newest = _release_info(model, session.get(ReleaseRow, best_id))  # type: ignore[arg-type]

    def load_all() -> list[ReleaseInfo]:
        found = session.scalars(select(ReleaseRow).where(ReleaseRow.model_id == model_id).order_by(ReleaseRow.seq))
        return [_release_info(model, r) for r in found]

    return ReleaseLine(model, tuple(versions), newest, _load_lineage(session, model_id, len(versions), load_all),
                       load_all)


def _load_lineage(
    session: Session, model_id: int, releases: int, load_all: Callable[[], list[ReleaseInfo]]
) -> Lineage:
    """The stored lineage if it covers every release, else one rebuilt from the snapshots."""
    row = session.get(LineageRow, model_id)
    if row is not None and row.release_seq == releases and row.format == LINEAGE_FORMAT:
        return Lineage.from_dict(json.loads(row.lineage_json))
    if releases == 0:
        return Lineage()
    return lineage_of((r.version, r.package) for r in load_all())


def _save_lineage(session: Session, model_id: int, seq: int, lineage: Lineage) -> None:
    data = json.dumps(lineage.to_dict(), separators=(",", ":"))
    row = session.get(LineageRow, model_id)
    if row is None:
        session.add(LineageRow(model_id=model_id, release_seq=seq, format=LINEAGE_FORMAT, lineage_json=data))
    else:
        row.release_seq, row.format, row.lineage_json = seq, LINEAGE_FORMAT, data


def _save_reservations(session: Session, release_id: int, package: ir.Package) -> None:
    scopes: list[tuple[str, ir.Message | ir.Enum]] = [("message", m) for m in package.messages]
    scopes += [("enum", e) for e in package.enums]
    for kind, scope in scopes:
        for r in scope.reserved_numbers:
            session.add(ReservationRow(release_id=release_id, scope_kind=kind, scope_name=scope.name,
                                       number_start=r.start, number_end=r.end))
        for name in scope.reserved_names:
            session.add(ReservationRow(release_id=release_id, scope_kind=kind, scope_name=scope.name, name=name))


def _load_history(session: Session, model_id: int) -> History:
    # Plain rows, not ORM objects: a model's ledger is read on every check and registration.
    history = History()
    for scope_name, number, name, type_key, names_json, active in session.execute(
        select(MessageRow.name, FieldRow.number, FieldRow.name, FieldRow.type_key, FieldRow.names_json,
               FieldRow.active)
        .join(FieldRow, FieldRow.message_id == MessageRow.id, isouter=True)
        .where(MessageRow.model_id == model_id)
        .order_by(MessageRow.id, FieldRow.number)
    ):
        scope = history.scope("message", scope_name)
        if number is not None:
            scope.slots[number] = Slot(number, name, type_key, json.loads(names_json), bool(active))
    for scope_name, number, name, active in session.execute(
        select(EnumRow.name, EnumValueRow.number, EnumValueRow.name, EnumValueRow.active)
        .join(EnumValueRow, EnumValueRow.enum_id == EnumRow.id, isouter=True)
        .where(EnumRow.model_id == model_id)
        .order_by(EnumRow.id, EnumValueRow.number)
    ):
        scope = history.scope("enum", scope_name)
        if number is not None:
            scope.slots[number] = Slot(number, name, "", [name], bool(active))
    return history


def _save_history(session: Session, model_id: int, history: History, release_id: int) -> None:
    """Write the updated ledger. New numbers are inserted; existing ones only change name/type."""
    messages = {m.name: m for m in session.scalars(select(MessageRow).where(MessageRow.model_id == model_id))}
    enums = {e.name: e for e in session.scalars(select(EnumRow).where(EnumRow.model_id == model_id))}
    for (kind, _name), scope in sorted(history.scopes.items()):
        if kind == "message":
            _save_message_scope(session, model_id, messages, scope, release_id)
        else:
            _save_enum_scope(session, model_id, enums, scope, release_id)


def _save_message_scope(
    session: Session, model_id: int, rows: dict[str, MessageRow], scope: Scope, release_id: int
) -> None:
    row = rows.get(scope.name)
    if row is None:
        row = MessageRow(model_id=model_id, name=scope.name)
        session.add(row)
        session.flush()
    existing = {f.number: f for f in row.fields}
    for number, slot in sorted(scope.slots.items()):
        f = existing.get(number)
        if f is None:
            session.add(FieldRow(message_id=row.id, number=number, name=slot.name,
                                 names_json=json.dumps(slot.names), type_key=slot.type_key,
                                 active=slot.active, first_release_id=release_id))
        else:
            f.name, f.type_key, f.active = slot.name, slot.type_key, slot.active
            f.names_json = json.dumps(slot.names)


def _save_enum_scope(
    session: Session, model_id: int, rows: dict[str, EnumRow], scope: Scope, release_id: int
) -> None:
    row = rows.get(scope.name)
    if row is None:
        row = EnumRow(model_id=model_id, name=scope.name)
        session.add(row)
        session.flush()
    existing = {v.number: v for v in row.values}
    for number, slot in sorted(scope.slots.items()):
        v = existing.get(number)
        if v is None:
            session.add(EnumValueRow(enum_id=row.id, number=number, name=slot.name,
                                     active=slot.active, first_release_id=release_id))
        else:
            v.name, v.active = slot.name, slot.active


# -- whole models: rows <-> records (export and import) -------------------------------------


def _model_record(session: Session, model: ModelRow) -> ModelRecord:
    releases = list(session.scalars(select(ReleaseRow).where(ReleaseRow.model_id == model.id).order_by(ReleaseRow.seq)))
    version_of = {r.id: r.version for r in releases}
    reservations: dict[int, list[ReservationRecord]] = {r.id: [] for r in releases}
    for row in session.scalars(
        select(ReservationRow).where(ReservationRow.release_id.in_(list(version_of))).order_by(ReservationRow.id)
    ):
        kind: ScopeKind = "enum" if row.scope_kind == "enum" else "message"
        reservations[row.release_id].append(
            ReservationRecord(kind, row.scope_name, row.number_start, row.number_end, row.name)
        )
    scopes: list[ScopeRecord] = []
    for message in session.scalars(select(MessageRow).where(MessageRow.model_id == model.id).order_by(MessageRow.id)):
        fields = session.scalars(select(FieldRow).where(FieldRow.message_id == message.id).order_by(FieldRow.number))
        scopes.append(ScopeRecord("message", message.name, tuple(
            AllocationRecord(f.number, f.name, bool(f.active), version_of[f.first_release_id],
                             tuple(json.loads(f.names_json)), f.type_key)
            for f in fields
        )))
    for enum in session.scalars(select(EnumRow).where(EnumRow.model_id == model.id).order_by(EnumRow.id)):
        values = session.scalars(select(EnumValueRow).where(EnumValueRow.enum_id == enum.id)
                                 .order_by(EnumValueRow.number))
        scopes.append(ScopeRecord("enum", enum.name, tuple(
            AllocationRecord(v.number, v.name, bool(v.active), version_of[v.first_release_id]) for v in values
        )))
    return ModelRecord(
        name=model.name,
        display_name=model.display_name,
        description=model.description,
        created_at=utc(model.created_at),
        releases=tuple(
            ReleaseRecord(
                version=r.version,
                created_at=utc(r.created_at),
                fingerprint=r.fingerprint,
                registered_by=r.protoreg_version,
                changes=tuple(json.loads(r.changes_json)),
                reservations=tuple(reservations[r.id]),
                schema=json.loads(r.schema_json),
                snapshot=json.loads(r.snapshot_json),
                proto_text=r.proto_text,
            )
            for r in releases
        ),
        ledger=tuple(scopes),
        adoption=_adoption_record(session, model.id, version_of),
    )


def _adoption_record(session: Session, model_id: int, version_of: dict[int, str]) -> AdoptionRecord | None:
    row = session.get(AdoptionRow, model_id)
    if row is None:
        return None
    return AdoptionRecord(version_of[row.release_id], row.source, json.loads(row.plan_json))


def _write_model_record(session: Session, record: ModelRecord) -> None:
    """Insert every row of ``record``; the model must not exist. Written the way registration
    writes them (the same JSON spelling), so a rebuilt database holds what the original held."""
    model = ModelRow(name=record.name, display_name=record.display_name, description=record.description,
                     created_at=record.created_at)
    session.add(model)
    session.flush()
    release_ids: dict[str, int] = {}
    for seq, release in enumerate(record.releases, start=1):
        version = parse_version(release.version)
        row = ReleaseRow(
            model_id=model.id,
            seq=seq,
            version=release.version,
            major=version.major,
            minor=version.minor,
            patch=version.patch,
            prerelease=version.prerelease or "",
            fingerprint=release.fingerprint,
            schema_json=json.dumps(release.schema, sort_keys=True),
            snapshot_json=json.dumps(release.snapshot, sort_keys=True),
            proto_text=release.proto_text,
            changes_json=json.dumps(list(release.changes)),
            protoreg_version=release.registered_by,
            created_at=release.created_at,
        )
        session.add(row)
        session.flush()
        release_ids[release.version] = row.id
        for r in release.reservations:
            session.add(ReservationRow(release_id=row.id, scope_kind=r.kind, scope_name=r.scope,
                                       number_start=r.start, number_end=r.end, name=r.name))
    for scope in record.ledger:
        if scope.kind == "message":
            message = MessageRow(model_id=model.id, name=scope.name)
            session.add(message)
            session.flush()
            for a in scope.allocations:
                session.add(FieldRow(message_id=message.id, number=a.number, name=a.name,
                                     names_json=json.dumps(list(a.names)), type_key=a.type_key, active=a.active,
                                     first_release_id=release_ids[a.since]))
        else:
            enum = EnumRow(model_id=model.id, name=scope.name)
            session.add(enum)
            session.flush()
            for a in scope.allocations:
                session.add(EnumValueRow(enum_id=enum.id, number=a.number, name=a.name, active=a.active,
                                         first_release_id=release_ids[a.since]))
    if record.adoption is not None:
        session.add(AdoptionRow(model_id=model.id, release_id=release_ids[record.adoption.version],
                                source=record.adoption.source,
                                plan_json=json.dumps(dict(record.adoption.plan), sort_keys=True)))
    if record.releases:
        lineage = lineage_of((r.version, ir.package_from_dict(dict(r.snapshot))) for r in record.releases)
        _save_lineage(session, model.id, len(record.releases), lineage)
    session.flush()
