"""Which model classes a server serves, found again when it reloads.

A MODEL_REF names a model class (``module:Class`` or a ``protoreg.models`` entry point). The
server serves each ref's class at the major line of its version and, for the same model, any
other class in the same module whose release is rendered in ``proto_versions/`` at another major
line: so a module that keeps ``ModelV1`` and ``ModelV2`` side by side serves both lines from one
ref, and a reload picks up a new major line added to the module.

On a reload the refs are resolved again: a module whose source file changed since it was imported
is re-imported (``importlib.reload``), entry points are read again (a new package version may
point elsewhere, ``--all`` may find new ones), and the classes are taken afresh.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from protoreg.registry.errors import ProtoregError
from protoreg.registry.loader import entry_point_models, load_model, model_metadata
from protoreg.registry.versioning import parse_version

from .compile import ProtoTree


@dataclass(frozen=True)
class Candidate:
    """A model class the server may serve, with where it came from."""

    ref: str
    model: Any
    name: str
    version: str
    major: int
    explicit: bool  # named by a MODEL_REF (a sibling found in its module is not)


def _stamp(module: ModuleType) -> tuple[int, int] | None:
    path = getattr(module, "__file__", None)
    if not path:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


class ModelSource:
    """The server's MODEL_REFs (and ``--all``), resolved to model classes, again on demand."""

    def __init__(self, refs: Sequence[str], all_models: bool = False) -> None:
        self.refs = list(refs)
        self.all_models = all_models
        self._stamps: dict[str, tuple[int, int] | None] = {}

    def _refs(self) -> list[str]:
        if not self.all_models:
            return list(self.refs)
        return self.refs + [name for name in sorted(entry_point_models()) if name not in self.refs]

    def _refresh_modules(self) -> None:
        """Re-import every model module whose source changed since it was (re)imported."""
        importlib.invalidate_caches()
        for name, stamp in list(self._stamps.items()):
            module = sys.modules.get(name)
            if module is not None and _stamp(module) != stamp:
                importlib.reload(module)
                self._stamps[name] = _stamp(module)

    def candidates(self) -> list[Candidate]:
        """Every class the refs name, and the same models' sibling classes in their modules."""
        self._refresh_modules()
        found: list[Candidate] = []
        seen: set[int] = set()
        for ref in self._refs():
            model = load_model(ref)
            module = sys.modules.get(getattr(model, "__module__", ""))
            if module is not None and module.__name__ not in self._stamps:
                self._stamps[module.__name__] = _stamp(module)
            found.append(_candidate(ref, model, explicit=True))
            seen.add(id(model))
            if module is None:
                continue
            name = found[-1].name
            for attr, value in sorted(vars(module).items()):
                if id(value) in seen or not isinstance(value, type) or getattr(value, "qualified_name", None) != name:
                    continue
                try:
                    found.append(_candidate(f"{module.__name__}:{attr}", value, explicit=False))
                except ProtoregError:
                    continue  # not a usable model class
                seen.add(id(value))
        return found


def _candidate(ref: str, model: Any, explicit: bool) -> Candidate:
    meta = model_metadata(model)
    return Candidate(ref, model, meta.qualified_name, meta.version, parse_version(meta.version).major, explicit)


def choose(candidates: Sequence[Candidate], tree: ProtoTree) -> list[Candidate]:
    """One class per model line: each ref's own class, plus siblings for other rendered majors.

    A ref's class is served even when its release is not rendered (binding it then says what to
    do); a sibling only when it is exactly the release rendered for its major line.
    """
    chosen: dict[tuple[str, int], Candidate] = {}
    for candidate in candidates:
        if candidate.explicit:
            chosen.setdefault((candidate.name, candidate.major), candidate)
    for candidate in candidates:
        line = (candidate.name, candidate.major)
        if candidate.explicit or line in chosen:
            continue
        release = tree.release(candidate.name, candidate.major)
        if release is not None and release.version == candidate.version:
            chosen[line] = candidate
    return list(chosen.values())
