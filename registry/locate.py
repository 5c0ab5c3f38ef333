"""Where a finding's fix is: the model's Python source, file and line.

``check`` and ``register`` compare a model's pydantic classes with the registry; a finding about
a field is fixed in the class that declares the field, not in the ``.proto`` protoreg renders.
:func:`locate_findings` points each finding at the line of the field (or enum member) in the
``.py`` file that declares it, at the line of its class when the field is gone (a removed field)
or the finding is about a whole message or enum, and at the model class for the rest (the
release, the package, the generated messages). A class whose source cannot be read (one built
at run time) keeps the ``.proto`` file the finding already names. Nothing here imports a model:
the classes come from the schema's :class:`~protoreg.registry.schema.SchemaOrigins`.
"""

from __future__ import annotations

import ast
import enum
import inspect
import linecache
import os
import textwrap
from collections.abc import Iterable
from dataclasses import replace
from functools import cache
from pathlib import Path

from .compat.findings import Report
from .naming import enum_value_name
from .schema import ModelSchema, SchemaOrigins
from .textstore import SUFFIX
from .typemap import enum_members

Location = tuple[str, int]


def locate_findings(report: Report, origins: SchemaOrigins, root: Path | None = None) -> Report:
    """``report`` with every finding it can place pointing at a ``.py`` file and line.

    Paths are relative to ``root`` (the current directory) when the file is inside it, as GitHub
    annotations want them.
    """
    base = (root or Path.cwd()).resolve()
    placed = []
    for finding in report.findings:
        where = _locate(finding.path, origins)
        if where is None:
            placed.append(finding)
            continue
        file, line = where
        placed.append(replace(finding, file=_relative(file, base), line=line))
    return replace(report, findings=tuple(placed))


def _relative(file: str, base: Path) -> str:
    path = Path(file).resolve()
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _locate(path: str, origins: SchemaOrigins) -> Location | None:
    head, _, member = path.partition(".")
    if head in origins.messages:
        cls = origins.messages[head]
        return (_member_line(cls, member) if member else None) or _class_line(cls) or _model_line(origins)
    if head in origins.enums:
        origin = origins.enums[head]
        if isinstance(origin, tuple):  # a Literal: the field that declares it
            owner, field_name = origin
            declaring = origins.messages.get(owner)
            if declaring is None:
                return _model_line(origins)
            return _member_line(declaring, field_name) or _class_line(declaring) or _model_line(origins)
        if member and issubclass(origin, enum.Enum):
            labels = {enum_value_name(head, label): m.name for label, m in enum_members(origin)}
            if member in labels:
                found = _member_line(origin, labels[member])
                if found:
                    return found
        return _class_line(origin) or _model_line(origins)
    return _model_line(origins)


def _model_line(origins: SchemaOrigins) -> Location | None:
    return _class_line(origins.model) if origins.model is not None else None


def _class_line(cls: type) -> Location | None:
    found = _class_source(cls)
    return None if found is None else (found[0], found[1])


@cache
def _class_source(cls: type) -> tuple[str, int, str] | None:
    """The class's file, first line and source text (None when Python cannot find them)."""
    try:
        file = inspect.getsourcefile(cls)
    except TypeError:
        return None
    if file is None:
        return None
    found = _module_classes(file).get(cls.__qualname__)
    if found is not None:
        lines = linecache.getlines(file)
        start, end = found
        return os.path.abspath(file), start, "".join(lines[start - 1:end])
    try:  # a class the module's text does not define under its name (made at run time, say)
        source_lines, start = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return None
    return os.path.abspath(file), max(start, 1), "".join(source_lines)


@cache
def _module_classes(file: str) -> dict[str, tuple[int, int]]:
    """``qualname -> (first line, last line)`` of every class the file defines, decorators included.

    ``inspect.getsourcelines`` parses the whole module again for every class it is asked about,
    which for a module of many models cost ``check --all`` more than the checking; this parses
    each file once. A class defined twice under one name keeps its last definition, as Python does.
    """
    try:
        tree = ast.parse("".join(linecache.getlines(file)))
    except (SyntaxError, ValueError):
        return {}
    found: dict[str, tuple[int, int]] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                found[prefix + node.name] = (start, node.end_lineno or node.lineno)
                visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(node.body, f"{prefix}{node.name}.<locals>.")
            elif isinstance(node, (ast.If, ast.Try)):  # classes defined under a condition
                for part in (node.body, node.orelse, getattr(node, "finalbody", []), *(
                        h.body for h in getattr(node, "handlers", []))):
                    visit(part, prefix)

    visit(tree.body, "")
    return found


def _member_line(cls: type, name: str) -> Location | None:
    """The line that declares ``name`` in ``cls`` or the nearest base class that declares it."""
    for owner in getattr(cls, "__mro__", (cls,)):
        if owner is object:
            continue
        found = _class_source(owner)
        if found is None:
            continue
        file, start, source = found
        line = _declaration(source, name)
        if line is not None:
            return file, start + line - 1
    return None


@cache
def _declarations(source: str) -> dict[str, int]:
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    lines: dict[str, int] = {}
    for node in body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Assign):
            targets = list(node.targets)
        for target in targets:
            if isinstance(target, ast.Name):
                lines.setdefault(target.id, node.lineno)
    return lines


def _declaration(source: str, name: str) -> int | None:
    return _declarations(source).get(name)


def source_files(origins: SchemaOrigins) -> set[Path]:
    """The ``.py`` files that declare a model: its class and every class of its schema."""
    classes = [origins.model, *origins.messages.values(), *(e for e in origins.enums.values() if isinstance(e, type))]
    files = set()
    for cls in classes:
        if cls is None:
            continue
        for owner in getattr(cls, "__mro__", (cls,)):
            found = _class_source(owner) if owner is not object else None
            if found is not None:
                files.add(Path(found[0]))
    return files


def touched_by(schema: ModelSchema, changed: Iterable[str], protos: Path, db: str | None,
               policy_file: Path | None) -> bool:
    """Whether any of the ``changed`` files (as pre-commit passes them) concerns the model of ``schema``:
    its Python source, its text-form registry file, its rendered protos, or the policy itself."""
    paths = {Path(c).resolve() for c in changed}
    if policy_file is not None and policy_file.resolve() in paths:
        return True
    if paths & {p.resolve() for p in source_files(schema.origins)}:
        return True
    model_protos = (protos / schema.model).resolve()
    if any(p == model_protos or model_protos in p.parents for p in paths):
        return True
    return db is not None and "://" not in db and (Path(db) / f"{schema.model}{SUFFIX}").resolve() in paths
