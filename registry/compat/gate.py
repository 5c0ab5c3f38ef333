"""The compatibility verdict for a model schema against its registry: ``check``, and the gate
``register`` runs inside its transaction before anything is written.

Both read the model's release line (``sources.ReleaseLine``): the newest release and the lineage of
every release, so a check costs the same at release 10 and at release 1000. Only a check against
an older baseline (``--against``), or of a version registered before the newest, parses every
release.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import ir
from ..errors import EXIT_FINDINGS, NotFoundError, ProtoregError
from ..numbering import Numbered
from ..registration import RegisterResult, fingerprint_against, register_release
from ..schema import ModelSchema
from ..store import Registry
from ..versioning import parse_version
from .engine import check_against_newest, check_release
from .findings import Report
from .sources import ReleaseLine, ReleaseSource

if TYPE_CHECKING:
    from ..policy import Policy


class BumpTooSmallError(ProtoregError):
    """The declared version bump is smaller than the findings need (exit code 100)."""

    exit_code = EXIT_FINDINGS

    def __init__(self, report: Report) -> None:
        self.report = report
        super().__init__(report.summary())


def check_schema(
    registry: ReleaseSource,
    schema: ModelSchema,
    *,
    against: str | None = None,
    file_prefix: str = "",
    policy: Policy | None = None,
) -> Report:
    """Number ``schema`` against the registry's history (writing nothing) and check it."""
    line = registry.release_line(schema.model)
    if against is not None and (line is None or not line.versions):
        raise NotFoundError(f'Model "{schema.model}" has no releases, so there is no "{against}" to check against')
    numbered = _number(registry, schema)
    return finish(check_line(line, numbered.package, schema, against=against, file_prefix=file_prefix), schema,
                  policy)


def _number(registry: ReleaseSource, schema: ModelSchema) -> Numbered:
    """The schema numbered as ``register`` would number it (an adopted model's adoption applied)."""
    from ..adopt.record import number_schema

    adoption_of = getattr(registry, "adoption", None)  # a store has it; a plain ReleaseSource need not
    adoption = adoption_of(schema.model) if callable(adoption_of) else None
    return number_schema(registry.history(schema.model), schema, adoption)


def finish(report: Report, schema: ModelSchema, policy: Policy | None) -> Report:
    """The verdict under the project's policy, each finding pointing at the model's source line."""
    from ..locate import locate_findings

    if policy is not None:
        report = policy.apply(report)
    return locate_findings(report, schema.origins)


def check_line(
    line: ReleaseLine | None,
    package: ir.Package,
    schema: ModelSchema,
    *,
    against: str | None = None,
    file_prefix: str = "",
) -> Report:
    """Check ``package`` (``schema`` numbered) against a model's release line.

    The lineage answers the history rules when the baseline is the newest release and it was
    registered last; anything else reads every release, as :func:`check_release` always did.
    """
    newest = line.newest if line is not None else None
    if line is None or newest is None:  # no releases yet (a release line has a newest once it has one)
        return check_release(schema.model, [], package, schema.version, schema.fingerprint, against=against,
                             file_prefix=file_prefix)
    fast = (
        line.newest_is_last
        and (against is None or against == newest.version)
        and (schema.version not in line.versions or schema.version == newest.version)
    )
    if fast:
        # The fingerprint only matters when the declared version equals the baseline's (is it
        # the same release, or a changed schema under an old version?); hashing a big schema
        # costs more than the rest of the check, so it is skipped otherwise.
        same_version = parse_version(schema.version) == newest.parsed_version or schema.version == newest.version
        fingerprint = fingerprint_against(schema, newest.package) if same_version else None
        return check_against_newest(schema.model, newest, line.lineage, package, schema.version, fingerprint,
                                    file_prefix=file_prefix, renames=schema.renames())
    releases = line.load_all()
    same = next((r for r in releases if r.version == schema.version), None)
    fingerprint = fingerprint_against(schema, same.package if same else None)
    return check_release(schema.model, releases, package, schema.version, fingerprint,
                         against=against, file_prefix=file_prefix, renames=schema.renames())



class ReleaseGate:
    """A ``Registry.register`` gate: refuses a release whose bump is too small.

    ``report`` holds the verdict of the last registration it saw, refused or not.
    """

    def __init__(self, file_prefix: str = "", policy: Policy | None = None) -> None:
        self.file_prefix = file_prefix
        self.policy = policy
        self.report: Report | None = None

    def __call__(self, line: ReleaseLine, numbered: Numbered, schema: ModelSchema) -> None:
        self.report = finish(check_line(line, numbered.package, schema, file_prefix=self.file_prefix), schema,
                             self.policy)
        if not self.report.passed:
            raise BumpTooSmallError(self.report)


@dataclass(frozen=True)
class GatedRegistration:
    """What ``protoreg register`` did with one schema. ``result`` is None when the gate refused it;
    ``report`` is the gate's verdict (None only when the gate never ran)."""

    schema: ModelSchema
    result: RegisterResult | None
    report: Report | None

    @property
    def refused(self) -> bool:
        return self.result is None


def register_checked(
    registry: Registry,
    schema: ModelSchema,
    *,
    dry_run: bool = False,
    file_prefix: str = "",
    policy: Policy | None = None,
) -> GatedRegistration:
    """Register ``schema`` behind the compatibility gate: refused, nothing written, when its
    version bump is too small for what changed (under the project's ``policy``)."""
    gate = ReleaseGate(file_prefix=file_prefix, policy=policy)
    try:
        result = register_release(registry, schema, dry_run=dry_run, gate=gate)
    except BumpTooSmallError as error:
        return GatedRegistration(schema, None, error.report)
    return GatedRegistration(schema, result, gate.report)
