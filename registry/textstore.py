"""A registry kept as text in a directory (``proto_registry/``), and which kind of registry a
``--db`` names.

A ``--db`` with ``://`` is a database URL (SQLite, PostgreSQL, ...); anything else is the path of
a *text-form registry*: a directory holding one ``<model>.txt`` per model
(:mod:`protoreg.registry.textform`) and a ``README.md`` that says what the directory is. A
:class:`TextRegistry` is a :class:`~protoreg.registry.store.Registry` over an in-memory SQLite
database, filled from the files of the models a command reads (only those: checking one model of
fifty parses one file), so every command behaves exactly as on a database. A registry opened for
writing writes the models a committed transaction touched back to their files (all files are
written first, then renamed into place), so ``register`` keeps the text in step the way it keeps
``proto_versions/``, and CI needs no database at all: ``--db proto_registry``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from . import ir
from .database import create_registry_engine, describe_url, open_registry, resolve_url
from .errors import DatabaseError, ProtoregError
from .lineage import Lineage
from .numbering import History
from .records import ModelRecord
from .store import Base, Registry, ReleaseInfo, ReleaseLine, Transaction
from .textform import format_model, parse_model

if TYPE_CHECKING:
    from .adopt.record import Adoption

SUFFIX = ".txt"
MARKER = "README.md"
MARKER_TITLE = "# protoreg registry (text form)"
MARKER_TEXT = f"""{MARKER_TITLE}

This directory is a protoreg registry: one `<model>.txt` per model, each holding every release of
the model (date, schema, numbered snapshot, reservations) and every field number ever allocated.
protoreg writes these files (`protoreg register`, `protoreg import`, `protoreg export`); do not edit
them by hand. Commands read it with `--db <this directory>` (or `db` under `[tool.protoreg]` in
pyproject.toml), and `protoreg import` rebuilds a database from it exactly.

When a merge conflicts in one of these files, two branches registered releases of the same model:
keep one side's file (`git checkout --theirs` or `--ours`), then run `protoreg register` again for
the other side's release.
"""


def is_text_location(url: str) -> bool:
    """Whether a ``--db`` value names a text-form directory rather than a database URL."""
    return "://" not in url


def describe_location(url: str | None) -> str:
    """A ``--db`` value as it may appear in a message (never with a password)."""
    resolved = resolve_url(url)
    return f"{resolved} (text form)" if is_text_location(resolved) else describe_url(resolved)


def open_location(url: str | None, *, write: bool = False) -> Registry:
    """Open the registry a ``--db`` value names: a database, or a text-form directory.

    ``write`` says whether the command may change it; a text-form registry that does not exist
    yet is created only then (and refused for a read, which must never start from nothing).
    """
    resolved = resolve_url(url)
    if is_text_location(resolved):
        return TextRegistry(Path(resolved), write=write)
    return open_registry(resolved, create=write)


def _not_a_registry(directory: Path, problem: str) -> DatabaseError:
    return DatabaseError(
        f'"{directory}" is not a protoreg text-form registry ({problem}); point --db (or $PROTOREG_DB, or db '
        "under [tool.protoreg]) at the registry's directory, or at a database URL such as sqlite:///protoreg.db"
    )


class TextRegistry(Registry):
    """A text-form registry directory, read into an in-memory database model by model."""

    def __init__(self, directory: Path, *, write: bool) -> None:
        self.directory = directory
        self.writable = write
        if directory.is_file() or (directory.exists() and not directory.is_dir()):
            raise _not_a_registry(directory, "it is a file; for an SQLite file use sqlite:///" + str(directory))
        if directory.is_dir():
            entries = [p.name for p in directory.iterdir()]
            if entries and not self._has_marker():
                raise _not_a_registry(directory, f"it holds no {MARKER} written by protoreg")
            if not entries and not write:
                raise DatabaseError(
                    f'The text-form registry "{directory}" is empty; a command that only reads needs a registry '
                    "with history: check --db (or $PROTOREG_DB, or db under [tool.protoreg])"
                )
        elif not write:
            raise DatabaseError(
                f'There is no registry at "{directory}" (text form): the directory does not exist; check --db '
                "(or $PROTOREG_DB, or db under [tool.protoreg]), or create one with `protoreg register` or "
                "`protoreg import`"
            )
        engine = create_registry_engine("sqlite://")
        Base.metadata.create_all(engine)
        super().__init__(engine, str(directory))
        self._texts: dict[str, str] = {}  # model -> the text its file holds (as read or written)
        self._loaded: set[str] = set()

    def _has_marker(self) -> bool:
        marker = self.directory / MARKER
        try:
            return marker.read_text(encoding="utf-8").startswith(MARKER_TITLE)
        except OSError:
            return False

    # reading: each model's file is parsed the first time a command asks for the model ---------

    def _files(self) -> dict[str, Path]:
        if not self.directory.is_dir():
            return {}
        return {p.name[: -len(SUFFIX)]: p for p in sorted(self.directory.glob(f"*{SUFFIX}"))}

    def _ensure(self, models: Iterable[str] | None = None) -> None:
        files = self._files()
        asked = None if models is None else list(models)
        # A model with no file is reported as unknown with the list of every model: read them all.
        wanted = list(files) if asked is None or any(m not in files for m in asked) else asked
        records: list[ModelRecord] = []
        for name in wanted:
            if name in self._loaded:
                continue
            text = files[name].read_text(encoding="utf-8")
            record = parse_model(text, str(files[name]))
            if record.name != name:
                raise ProtoregError(
                    f'{files[name]} holds model "{record.name}", not "{name}"; a model\'s file is named after it: '
                    "restore the file from git"
                )
            self._texts[name] = text
            self._loaded.add(name)
            records.append(record)
        if records:
            with Registry.transaction(self) as tx:
                for record in records:
                    tx.replace_model(record)

    def model_names(self) -> list[str]:
        self._ensure()
        return super().model_names()

    def releases(self, model: str) -> list[ReleaseInfo]:
        self._ensure([model])
        return super().releases(model)

    def release(self, model: str, version: str | None = None) -> ReleaseInfo:
        self._ensure([model])
        return super().release(model, version)

    def served_packages(self) -> list[ir.Package]:
        self._ensure()
        return super().served_packages()

    def release_line(self, model: str) -> ReleaseLine | None:
        self._ensure([model])
        return super().release_line(model)

    def stored_lineage(self, model: str) -> tuple[int, int, Lineage] | None:
        self._ensure([model])
        return super().stored_lineage(model)

    def history(self, model: str) -> History:
        self._ensure([model])
        return super().history(model)

    def adoption(self, model: str) -> Adoption | None:
        self._ensure([model])
        return super().adoption(model)

    def reservations(self, model: str) -> dict[str, set[tuple[str, str, str]]]:
        self._ensure([model])
        return super().reservations(model)

    def versions(self, model: str) -> tuple[str, ...] | None:
        self._ensure([model])
        return super().versions(model)

    def model_record(self, model: str) -> ModelRecord:
        self._ensure([model])
        return super().model_record(model)

    # writing: a committed transaction's models go back to their files --------------------------

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        if not self.writable:
            raise ProtoregError(f'The text-form registry "{self.directory}" was opened read-only')
        self._ensure()
        with super().transaction() as tx:
            yield tx
        self._write_back(tx.touched)

    def _write_back(self, models: set[str]) -> None:
        existing = set(Registry.model_names(self))
        changed = {}
        for name in sorted(models & existing):
            text = format_model(Registry.model_record(self, name))
            if self._texts.get(name) != text:
                changed[name] = text
        if not changed:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        staged: list[tuple[Path, Path]] = []
        if not self._has_marker():
            changed_marker = self.directory / MARKER
            staged.append((self._stage(changed_marker, MARKER_TEXT), changed_marker))
        for name, text in changed.items():
            target = self.directory / f"{name}{SUFFIX}"
            staged.append((self._stage(target, text), target))
        # Every file is complete on disk before the first one replaces its old version.
        for tmp, target in staged:
            tmp.replace(target)
        self._texts.update(changed)
        self._loaded.update(changed)

    @staticmethod
    def _stage(target: Path, text: str) -> Path:
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        return tmp
