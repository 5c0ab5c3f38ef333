"""Registering a release: numbering, the compatibility gate, rendering and the store, all or nothing.

:func:`register_release` is the one place these meet. Inside one transaction that holds the
model's write lock from its first read to its commit, it reads the release already registered
under the same version (the same schema again is a no-op; another schema is refused), the
model's release line and its numbering ledger; numbers the schema (:mod:`protoreg.registry.numbering`);
hands the result to the gate (``protoreg register`` passes the compatibility check, which raises
to refuse); renders the ``.proto`` text (:mod:`protoreg.registry.render`) and compiles it with protoc (a
rendering protoc refuses rolls the transaction back); and writes it all
(:mod:`protoreg.registry.store`). A transaction that loses a race with another writer is run again
(:mod:`protoreg.registry.retry`). ``PROTOREG_CRASH_AT`` steps (:mod:`protoreg.registry.faults`) mark where the crash
tests kill it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from . import ir
from .errors import ProtoregError, ReleaseConflictError, VersionError
from .faults import crash_point
from .lineage import Lineage
from .numbering import Change, History, Numbered
from .retry import retry
from .schema import ModelSchema
from .store import NewRelease, Registry, ReleaseInfo, ReleaseLine, Transaction
from .versioning import Version, parse_version

if TYPE_CHECKING:
    from .adopt.fit import Plan


class RenderingRefusedError(ProtoregError):
    """protoc refused a release's rendering; the registration was rolled back."""


class Gate(Protocol):
    """Called inside the registration transaction before anything is written; raises to refuse."""

    def __call__(self, line: ReleaseLine, numbered: Numbered, schema: ModelSchema) -> None: ...


@dataclass(frozen=True)
class RegisterResult:
    """``status`` is ``created``, ``unchanged`` (same version, same schema) or ``planned`` (dry run)."""

    status: Literal["created", "unchanged", "planned"]
    model: str
    version: str
    package: ir.Package
    changes: tuple[Change, ...]
    previous: ReleaseInfo | None


def register_release(
    registry: Registry, schema: ModelSchema, *, dry_run: bool = False, gate: Gate | None = None,
    adopting: Plan | None = None,
) -> RegisterResult:
    """Record ``schema`` as a release: allocate numbers, check, render, store, all or nothing.

    ``adopting`` makes it the model's first release, numbered from an existing API (``protoreg adopt``).
    """
    version = parse_version(schema.version)
    result = retry(lambda: _register_once(registry, schema, version, dry_run, gate, adopting))
    crash_point("committed")
    return result


def _register_once(
    registry: Registry, schema: ModelSchema, version: Version, dry_run: bool, gate: Gate | None,
    adopting: Plan | None = None,
) -> RegisterResult:
    from .adopt.record import number_schema

    with registry.transaction() as tx:
        model_id = tx.lock_model(schema.model, schema.display_name, schema.description, create=not dry_run)
        crash_point("locked")
        adoption = tx.adoption(model_id) if model_id is not None else None
        if adopting is not None:
            _refuse_second_adoption(tx, model_id, schema, adopting, adoption)
        existing = tx.release(model_id, schema.model, schema.version) if model_id is not None else None
        if existing is not None and existing.fingerprint == fingerprint_against(schema, existing.package):
            return RegisterResult("unchanged", schema.model, schema.version, existing.package, (), existing)
        line = tx.release_line(model_id, schema.model) if model_id is not None else _no_releases(schema)
        newest = line.newest
        if adopting is not None:
            adoption, history = adopting.adoption, adopting.history
        else:
            history = tx.history(model_id) if model_id is not None else History()
        numbered = number_schema(history, schema, adoption)
        crash_point("numbered")
        if gate is not None:
            # Before the version checks below: a forgotten bump (the same version with another
            # schema) or a version that goes backwards is a finding of the gate, so ``register``
            # refuses it exactly as ``check`` does (exit 100), with the report that says why.
            gate(line, numbered, schema)
        if existing is not None:
            raise ReleaseConflictError(
                f"{schema.model} {schema.version} is already registered with a different schema; "
                f"a release is immutable, so bump the version (see: protoreg check {schema.model})"
            )
        if newest is not None and version < newest.parsed_version:
            raise VersionError(
                f"{schema.model} {schema.version} is lower than the newest release "
                f"{newest.version}; versions only go forward, so choose a version above "
                f"{newest.version}"
            )
        proto_text = _compiled_rendering(schema, numbered.package)
        if dry_run or model_id is None:
            return RegisterResult("planned", schema.model, schema.version, numbered.package, numbered.changes, newest)
        _write(tx, model_id, schema, version, numbered, line.lineage,
               tuple(adopting.lines()) if adopting is not None else (), proto_text=proto_text)
        if adopting is not None:
            tx.add_adoption(model_id, adopting.adoption)
        crash_point("before_commit")
        return RegisterResult("created", schema.model, schema.version, numbered.package, numbered.changes, newest)


def fingerprint_against(schema: ModelSchema, release: ir.Package | None) -> str:
    """The fingerprint to compare with a release's (``release`` is its snapshot): one registered
    before protoreg recorded field contracts was fingerprinted without them, so the same model
    still matches it and registering it again stays a no-op."""
    if release is not None and not release.contracts_recorded:
        return schema.structure_fingerprint
    return schema.fingerprint


def _no_releases(schema: ModelSchema) -> ReleaseLine:
    return ReleaseLine(schema.model, (), None, Lineage(), list)


def _refuse_second_adoption(
    tx: Transaction, model_id: int | None, schema: ModelSchema, adopting: Plan, adoption: object
) -> None:
    """``adopt`` records a model's first release: once, and only before any other."""
    versions = tx.release_line(model_id, schema.model).versions if model_id is not None else ()
    if not versions:
        return
    if adoption == adopting.adoption and versions == (schema.version,):
        return  # the same adoption again: a no-op, like registering the same release again
    raise ReleaseConflictError(
        f"{schema.model} already has releases ({', '.join(versions)}); `protoreg adopt` records a model's first "
        f"release only, so evolve it with `protoreg register {schema.model}`"
    )


def _compiled_rendering(schema: ModelSchema, package: ir.Package) -> str:
    """The release's ``.proto`` text, once protoc has compiled it: a rendering protoc refuses is
    never committed (it would break serving every model in ``proto_versions/``)."""
    from .protoc import ProtocError, compile_texts
    from .render import render_package  # Jinja2: only writers pay for importing it

    text = render_package(package)
    try:
        compile_texts({package.proto_path: text})
    except ProtocError as error:
        detail = " ".join(str(error).split(": ", 1)[-1].split())
        raise RenderingRefusedError(
            f"{schema.model} {schema.version}: protoc refuses its rendering ({detail}); nothing was registered; "
            "rename what the message names, or report it as a protoreg bug"
        ) from error
    return text


def _write(
    tx: Transaction, model_id: int, schema: ModelSchema, version: Version, numbered: Numbered, lineage: Lineage,
    first_changes: tuple[str, ...] = (), *, proto_text: str,
) -> None:
    lineage.fold_package(schema.version, numbered.package)
    tx.add_release(
        model_id,
        NewRelease(
            display_name=schema.display_name,
            description=schema.description,
            version=schema.version,
            parsed_version=version,
            fingerprint=schema.fingerprint,
            schema=schema.to_dict(),
            package=numbered.package,
            proto_text=proto_text,
            changes=first_changes + tuple(c.describe() for c in numbered.changes),
            history=numbered.history,
            lineage=lineage,
        ),
    )
