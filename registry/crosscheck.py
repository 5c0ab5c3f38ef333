"""What the committed ``proto_versions/`` says against what the registry knows.

Every model file protoreg renders names the release it was rendered from (``// Release:
churn_model==2.0.0``). A registry that does not know such a release is not the registry the tree
was rendered from: a wrong ``--db``, a fresh CI runner with an empty database, a text-form registry
that was not committed. A gate that went on would compare the model with nothing and pass, so
``check``, ``register`` and ``render --check`` stop instead (:func:`refuse_unknown_releases`).
A model that is really new has no release in the registry and no file in the tree, and
:func:`new_model_note` says so in the report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .errors import ProtoregError
from .naming import MODEL_NAME, read_release_header


class KnowsReleases(Protocol):
    """The one question asked of a registry: which versions of a model it holds (None: no such model)."""

    def versions(self, model: str) -> tuple[str, ...] | None: ...


class UnknownReleaseError(ProtoregError):
    """``proto_versions/`` was rendered from releases the registry does not have (exit 1)."""


@dataclass(frozen=True)
class CommittedRelease:
    """A model file of the tree and the release its header names. ``path`` includes the root."""

    path: str
    model: str
    version: str


def committed_releases(root: Path, models: Iterable[str] | None = None) -> list[CommittedRelease]:
    """The release header of every ``<model>/v<major>/<model>.proto`` under ``root`` (of ``models`` only)."""
    wanted = None if models is None else set(models)
    found: list[CommittedRelease] = []
    if not root.is_dir():
        return found
    for directory in sorted(p for p in root.iterdir() if p.is_dir() and MODEL_NAME.fullmatch(p.name)):
        if wanted is not None and directory.name not in wanted:
            continue
        for path in sorted(directory.glob(f"v*/{directory.name}.proto")):
            try:
                header = read_release_header(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError):
                continue
            if header is not None:
                found.append(CommittedRelease(str(path), *header))
    return found


def unknown_releases(registry: KnowsReleases, root: Path, models: Iterable[str] | None = None
                     ) -> list[CommittedRelease]:
    """The committed releases (of ``models``, or all) that ``registry`` does not have."""
    unknown = []
    known: dict[str, tuple[str, ...]] = {}
    for committed in committed_releases(root, models):
        if committed.model not in known:
            known[committed.model] = registry.versions(committed.model) or ()
        if committed.version not in known[committed.model]:
            unknown.append(committed)
    return unknown


def refuse_unknown_releases(registry: KnowsReleases, root: Path, where: str,
                            models: Iterable[str] | None = None,
                            reproduced: Callable[[CommittedRelease], bool] | None = None) -> None:
    """Raise :class:`UnknownReleaseError` when ``root`` was rendered from releases ``registry`` lacks.

    ``reproduced`` (``register``'s) excuses a committed release that the registration under way
    renders again byte for byte: a fresh clone registering the first release its committed tree
    was rendered from (the README's ``make run``), where nothing of any history can be missing.
    """
    unknown = [u for u in unknown_releases(registry, root, models) if reproduced is None or not reproduced(u)]
    if not unknown:
        return
    releases = " and ".join(f"{u.model} {u.version}" for u in unknown)
    files = ", ".join(u.path for u in unknown)
    raise UnknownReleaseError(
        f"The registry at {where} does not know {releases}, which {root}/ was rendered from ({files}): wrong --db? "
        "Point --db (or $PROTOREG_DB, or db under [tool.protoreg]) at the registry that rendered them"
    )


def new_model_note(model: str, version: str, where: str, root: Path) -> str:
    """What ``check`` says of a model with no release anywhere: it is new, explicitly."""
    return (f"{model} {version}: a new model: the registry at {where} has no release of {model}, and {root}/ "
            f"holds no file of it")
