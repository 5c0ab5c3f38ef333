"""What the checker reads from a registry, as Protocols: the seam between ``compat`` and the store.

The checker never imports the store (SQLAlchemy); it reads releases through these structural
types, which :class:`protoreg.registry.store.ReleaseInfo`, :class:`protoreg.registry.store.ReleaseLine` and
:class:`protoreg.registry.store.Registry` satisfy (mypy checks it where the gate is called), and which a
test or another backend can satisfy with plain objects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from .. import ir
from ..lineage import Lineage
from ..numbering import History
from ..versioning import Version


class Release(Protocol):
    """One registered release of a model."""

    @property
    def model(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def parsed_version(self) -> Version: ...

    @property
    def fingerprint(self) -> str: ...

    @property
    def package(self) -> ir.Package: ...


class ReleaseLine(Protocol):
    """A model's releases as a check needs them, without parsing every snapshot.

    ``versions`` lists every release, oldest first; ``newest`` is the highest version (the first
    registered among equals); ``lineage`` summarises every release in registration order;
    ``load_all`` parses every release (only for checks against an older baseline).
    """

    @property
    def versions(self) -> tuple[str, ...]: ...

    @property
    def newest(self) -> Release | None: ...

    @property
    def lineage(self) -> Lineage: ...

    @property
    def load_all(self) -> Callable[[], Sequence[Release]]: ...

    @property
    def newest_is_last(self) -> bool: ...


class ReleaseSource(Protocol):
    """A registry, read-only, as ``check`` and ``diff`` read it."""

    def release_line(self, model: str) -> ReleaseLine | None: ...

    def history(self, model: str) -> History: ...

    def releases(self, model: str) -> Sequence[Release]: ...

    def release(self, model: str, version: str | None = None) -> Release: ...
