"""Rendering: IR packages -> ``.proto`` text, and the layout of ``proto_versions/``.

Jinja2 runs with ``StrictUndefined``, ``trim_blocks`` and ``lstrip_blocks``; templates only loop
and print, everything they need is a field or property of the IR. Output depends on nothing but
the IR and the templates, so a past release renders byte-identically forever.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import jinja2

from . import ir
from .faults import crash_point
from .naming import REGISTRY_PROTO_PATH

BUF_YAML = """\
# proto_versions/ is a buf module: `buf lint` (STANDARD) and `buf breaking` run from here.
version: v2
lint:
  use:
    - STANDARD
breaking:
  use:
    - WIRE_JSON
"""


def _comment(text: str, indent: str) -> str:
    """A description as ``//`` comment lines ending in a newline ("" when there is none)."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return "".join(f"{indent}//{' ' if line else ''}{line}\n" for line in lines)


def _quoted(names: Iterable[str]) -> list[str]:
    return [f'"{name}"' for name in names]


_environment = jinja2.Environment(
    loader=jinja2.PackageLoader("protoreg.registry", "templates"),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,
)
_environment.filters["comment"] = _comment
_environment.filters["quoted"] = _quoted


def render_package(package: ir.Package) -> str:
    """The ``.proto`` text of one model package."""
    return _environment.get_template("model.proto.j2").render(package=package)


def render_registry_proto() -> str:
    """The ``.proto`` text of the ``protoreg.registry.v1`` service."""
    return _environment.get_template("registry.proto.j2").render()


@dataclass(frozen=True)
class RenderedFile:
    path: str  # relative to proto_versions/
    content: str


def render_tree(packages: Iterable[ir.Package]) -> list[RenderedFile]:
    """Every file ``proto_versions/`` should hold for these packages (one per major line), with
    the files of the existing APIs adopted lines stand for, as they were adopted."""
    packages = list(packages)
    legacy = {path: text for p in packages if p.legacy is not None for path, text in p.legacy.files}
    files = [
        RenderedFile("buf.yaml", _buf_yaml(sorted(legacy))),
        RenderedFile(REGISTRY_PROTO_PATH, render_registry_proto()),
    ]
    files += [RenderedFile(p.proto_path, render_package(p)) for p in packages]
    files += [RenderedFile(path, text) for path, text in legacy.items()]
    return sorted(files, key=lambda f: f.path)


def _buf_yaml(legacy: list[str]) -> str:
    """``BUF_YAML``; adopted APIs' files are kept as their clients know them, so lint skips them."""
    if not legacy:
        return BUF_YAML
    ignore = "".join(f"    - {path}\n" for path in legacy)
    return BUF_YAML.replace("    - STANDARD\n", f"    - STANDARD\n  ignore:\n{ignore}", 1)


@dataclass(frozen=True)
class TreeDiff:
    stale: tuple[str, ...]  # files whose content differs
    missing: tuple[str, ...]  # files that should exist and do not
    extra: tuple[str, ...]  # .proto files protoreg would not write (left alone)

    @property
    def clean(self) -> bool:
        return not (self.stale or self.missing)


def diff_tree(root: Path, files: list[RenderedFile]) -> TreeDiff:
    stale, missing = [], []
    for item in files:
        target = root / item.path
        if not target.exists():
            missing.append(item.path)
        elif target.read_text(encoding="utf-8") != item.content:
            stale.append(item.path)
    wanted = {f.path for f in files}
    extra = sorted(
        str(p.relative_to(root)) for p in root.rglob("*.proto") if str(p.relative_to(root)) not in wanted
    ) if root.exists() else []
    return TreeDiff(tuple(stale), tuple(missing), tuple(extra))


def write_tree(root: Path, files: list[RenderedFile]) -> list[str]:
    """Write the files that changed (atomically, one by one); returns their paths."""
    written = []
    for item in files:
        target = root / item.path
        if target.exists() and target.read_text(encoding="utf-8") == item.content:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")  # one per writer: no clash
        tmp.write_text(item.content, encoding="utf-8")
        tmp.replace(target)
        written.append(item.path)
        crash_point("rendering")
    return written
