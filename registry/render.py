"""Rendering: IR packages -> ``.proto`` text, and the layout of ``proto_versions/``.

Jinja2 runs with ``StrictUndefined``, ``trim_blocks`` and ``lstrip_blocks``; templates only loop
and print, everything they need is a field or property of the IR. Output depends on nothing but
the IR and the templates, so a past release renders byte-identically forever.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import jinja2

from . import ir
from .faults import crash_point
from .naming import REGISTRY_PROTO_PATH
from .protoc import VALIDATE_PROTO, vendored_include
from .protovalidate import field_rules, unmapped

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


def _one_line(text: str) -> str:
    """Text for a single comment line: line breaks become spaces, so nothing can start a new line
    (such as a forged ``// Release:`` header). Text without line breaks is returned unchanged."""
    lines = text.splitlines()
    return " ".join(line.strip() for line in lines) if len(lines) > 1 or text != "".join(lines) else text


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
_environment.filters["one_line"] = _one_line


def _options(protovalidate: bool) -> Callable[[ir.Field], str]:
    """The bracketed options after a field's number: ``[deprecated = true]`` and, when asked,
    its protovalidate rules (one a line when there are several)."""

    def options(f: ir.Field) -> str:
        items = (["deprecated = true"] if f.deprecated else []) + (field_rules(f) if protovalidate else [])
        if not items:
            return ""
        if len(items) == 1:
            return f" [{items[0]}]"
        return " [\n" + ",\n".join(f"    {item}" for item in items) + "\n  ]"

    return options


def _comment_lines(protovalidate: bool) -> Callable[[ir.Field], str]:
    """A field's contract in plain words (nothing for snapshots that do not record one)."""

    def words(f: ir.Field) -> str:
        lines = list(f.contract_words)
        if protovalidate:
            lines += [f"Not a protovalidate rule: {note}." for note in unmapped(f)]
        return "\n".join(lines)

    return words


def render_package(package: ir.Package, *, protovalidate: bool = False) -> str:
    """The ``.proto`` text of one model package; ``protovalidate`` adds ``buf.validate`` rules."""
    imports = list(package.imports)
    if protovalidate and any(field_rules(f) for m in package.messages for f in m.fields):
        imports = sorted({*imports, VALIDATE_PROTO})
    return _environment.get_template("model.proto.j2").render(
        package=package, imports=imports, options=_options(protovalidate), words=_comment_lines(protovalidate)
    )


def render_registry_proto() -> str:
    """The ``.proto`` text of the ``protoreg.registry.v1`` service."""
    return _environment.get_template("registry.proto.j2").render()


@dataclass(frozen=True)
class RenderedFile:
    path: str  # relative to proto_versions/
    content: str


def render_tree(packages: Iterable[ir.Package], *, protovalidate: bool = False) -> list[RenderedFile]:
    """Every file ``proto_versions/`` should hold for these packages (one per major line), with
    the files of the existing APIs adopted lines stand for, as they were adopted; ``protovalidate``
    adds ``buf.validate`` rules and ships ``buf/validate/validate.proto``."""
    packages = list(packages)
    legacy = {path: text for p in packages if p.legacy is not None for path, text in p.legacy.files}
    files = [
        RenderedFile("buf.yaml", _buf_yaml(sorted(legacy), protovalidate)),
        RenderedFile(REGISTRY_PROTO_PATH, render_registry_proto()),
    ]
    if protovalidate:
        files.append(RenderedFile(VALIDATE_PROTO, (vendored_include() / VALIDATE_PROTO).read_text(encoding="utf-8")))
    files += [RenderedFile(p.proto_path, render_package(p, protovalidate=protovalidate)) for p in packages]
    files += [RenderedFile(path, text) for path, text in legacy.items()]
    return sorted(files, key=lambda f: f.path)


def _buf_yaml(legacy: list[str], protovalidate: bool) -> str:
    """``BUF_YAML``, with lint told to skip the files protoreg ships but did not design.

    Adopted APIs' files are kept as their clients know them; protovalidate's own file is shipped
    unchanged so clients compile offline, and its package, buf.validate, has no version suffix.
    """
    extra = ""
    if legacy:
        extra += "  ignore:\n" + "".join(f"    - {path}\n" for path in legacy)
    if protovalidate:
        extra += f"  ignore_only:\n    PACKAGE_VERSION_SUFFIX:\n      - {VALIDATE_PROTO}\n"
    return BUF_YAML.replace("    - STANDARD\n", f"    - STANDARD\n{extra}", 1)


@dataclass(frozen=True)
class TreeDiff:
    stale: tuple[str, ...]  # files whose content differs
    missing: tuple[str, ...]  # files that should exist and do not
    extra: tuple[str, ...]  # .proto files protoreg would not write: serve would serve them
    leftovers: tuple[str, ...] = ()  # temporary files of an interrupted render

    @property
    def clean(self) -> bool:
        return not (self.stale or self.missing or self.extra or self.leftovers)


_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")
"""A file :func:`write_tree` writes before renaming it into place: ``.<name>.<pid>.tmp``."""


def leftover_files(root: Path) -> list[str]:
    """Temporary files an interrupted render (a full disk, SIGKILL) left under ``root``."""
    if not root.is_dir():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*.tmp") if _TMP.match(p.name) and p.is_file())


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
    return TreeDiff(tuple(stale), tuple(missing), tuple(extra), tuple(leftover_files(root)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(root: Path) -> list[str]:
    """Remove the temporary files of renders that are no longer running; returns their paths."""
    removed = []
    for path in leftover_files(root):
        match = _TMP.match(Path(path).name)
        assert match is not None
        pid = int(match["pid"])
        if pid == os.getpid() or _alive(pid):
            continue  # a render running right now is writing it (a failed write removes its own)
        (root / path).unlink(missing_ok=True)
        removed.append(path)
    return removed


def write_tree(root: Path, files: list[RenderedFile]) -> list[str]:
    """Write the files that changed (atomically, one by one); returns their paths.

    Temporary files an earlier, interrupted render left behind are removed first, and a write
    that fails removes its own before the error propagates.
    """
    if root.is_dir():
        remove_leftovers(root)
    written = []
    for item in files:
        target = root / item.path
        if target.exists() and target.read_text(encoding="utf-8") == item.content:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")  # one per writer: no clash
        try:
            tmp.write_text(item.content, encoding="utf-8")
            tmp.replace(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        written.append(item.path)
        crash_point("rendering")
    return written
