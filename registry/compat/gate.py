"""The compatibility verdict for a model schema against its registry: ``check`` and the gate
``register`` runs inside its transaction before anything is written.
"""

from __future__ import annotations

from typing import Any

from ..errors import NotFoundError, ProtoregError
from ..numbering import Numbered, allocate_numbers
from ..schema import ModelSchema
from .engine import check_release
from .findings import Report

EXIT_FINDINGS = 100


class BumpTooSmallError(ProtoregError):
    """The declared version bump is smaller than the findings need (exit code 100)."""

    exit_code = EXIT_FINDINGS

    def __init__(self, report: Report) -> None:
        self.report = report
        super().__init__(report.summary())


def check_schema(registry: Any, schema: ModelSchema, *, against: str | None = None, file_prefix: str = "") -> Report:
    """Number ``schema`` against the registry's history (writing nothing) and check it."""
    try:
        releases = registry.releases(schema.model)
    except NotFoundError:
        releases = []
    if against is not None and not releases:
        raise NotFoundError(f'Model "{schema.model}" has no releases, so there is no "{against}" to check against')
    numbered = allocate_numbers(registry.history(schema.model), schema)
    return check_release(
        schema.model,
        releases,
        numbered.package,
        schema.version,
        schema.fingerprint,
        against=against,
        file_prefix=file_prefix,
    )


class ReleaseGate:
    """A ``Registry.register`` gate: refuses a release whose bump is too small.

    ``report`` holds the verdict of the last registration it saw, refused or not.
    """

    def __init__(self, file_prefix: str = "") -> None:
        self.file_prefix = file_prefix
        self.report: Report | None = None

    def __call__(self, releases: list[Any], numbered: Numbered, schema: ModelSchema) -> None:
        self.report = check_release(
            schema.model,
            releases,
            numbered.package,
            schema.version,
            schema.fingerprint,
            file_prefix=self.file_prefix,
        )
        if not self.report.passed:
            raise BumpTooSmallError(self.report)
