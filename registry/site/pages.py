"""The registry browser's pages: site data (:mod:`protoreg.registry.site.data`) -> files.

:func:`render_site` turns the site data into a mapping of relative paths to bytes: HTML pages
from the Jinja2 templates in ``templates/`` (``StrictUndefined``, autoescaping on), the script
and stylesheet from ``static/``, each release's ``.proto`` file, and ``site.json`` (the data
itself). Every link is relative, so the files work under any base path and from ``file://``;
the output depends only on the data and the arguments, byte for byte.

Layout::

    index.html                          models, releases with dates and bumps, major lines
    <model>/index.html                  the field ledger, with its legend
    <model>/releases.html               releases: dates, bumps, what changed
    <model>/diff/index.html             pick two releases
    <model>/diff/<from>_<to>.html       the checker's findings, the fields that differ, the text diff
    <model>/proto/<version>.html        the .proto text of a release
    <model>/proto/<version>/<file>      the same text, to download
    <model>/try.html                    a request form per major line, posted as Connect JSON
    static/site.css, static/site.js
    site.json

:func:`render_served` is the one page a server shows without site data: what it serves, with a
JSON request form per line.

This module needs neither the database nor SQLAlchemy: a server holding only ``site.json``
renders the same pages, passing what it serves and where its try-it forms post.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Collection, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from ..errors import UsageError
from ..ledger import Cell, describe_type, transition

STATIC_FILES = ("site.css", "site.js")
DATA_FILE = "site.json"

LEGEND = (
    ("added", "a field takes the number"),
    ("renamed", "same number and type, new name"),
    ("changed", "same number, new type, label or requiredness"),
    ("unchanged", "as in the release before"),
    ("removed", "the field is gone; its number and name are reserved"),
    ("reserved", "reserved: never to be used again"),
)

_environment = jinja2.Environment(
    loader=jinja2.PackageLoader("protoreg.registry.site", "templates"),
    undefined=jinja2.StrictUndefined,
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def render_site(
    data: Mapping[str, Any],
    *,
    try_it_base: str | None = None,
    served: Mapping[str, Collection[str]] | None = None,
) -> dict[str, bytes]:
    """Every file of the browser, by relative path.

    ``try_it_base`` is where the try-it forms post (``<base>/<package>.<Service>/Predict``): an
    absolute URL, or a path relative to the site's root (``"./"`` when a server serves the
    pages itself); None shows the forms disabled. ``served`` maps a model to the versions a
    server is serving, to mark them; None for a static site.
    """
    context = {"try_it_base": try_it_base, "served": served is not None, "version": data["protoreg_version"]}
    files: dict[str, bytes] = {}

    def page(path: str, template: str, **values: Any) -> None:
        root = "../" * path.count("/")
        text = _environment.get_template(template).render(root=root, site=context, **values)
        files[path] = text.encode()

    models = [_model_view(m, served) for m in data["models"]]
    page("index.html", "index.html.j2", models=models, nav="index")
    for model in models:
        name = model["name"]
        page(f"{name}/index.html", "ledger.html.j2", model=model, nav="ledger", legend=LEGEND,
             ledger=_ledger_view(model))
        page(f"{name}/releases.html", "releases.html.j2", model=model, nav="releases")
        page(f"{name}/diff/index.html", "diff_index.html.j2", model=model, nav="diff")
        for diff in model["diffs"]:
            page(f"{name}/diff/{diff['from']}_{diff['to']}.html", "diff.html.j2", model=model, nav="diff",
                 diff=diff, fields=_field_changes(model, diff["from"], diff["to"]),
                 text=_text_diff(model, diff["from"], diff["to"]))
        for release in model["releases"]:
            page(f"{name}/proto/{release['version']}.html", "proto.html.j2", model=model, nav="releases",
                 release=release)
            files[f"{name}/proto/{release['version']}/{release['proto_file']}"] = release["proto"].encode()
        page(f"{name}/try.html", "try.html.j2", model=model, nav="try")
    files.update(_static_files())
    files[DATA_FILE] = (json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()
    return dict(sorted(files.items()))


def render_served(lines: Sequence[Mapping[str, Any]]) -> dict[str, bytes]:
    """The page a server without ``--site`` shows at its root, with the script and stylesheet.

    ``lines`` are the served major lines: ``model``, ``display_name``, ``description``,
    ``version``, ``major``, ``package``, ``path`` (``<package>.<Service>/Predict``) and
    ``example`` (a request in the proto3 JSON mapping, as text), each with a JSON try-it form
    posting to the server itself.
    """
    from .. import __version__

    context = {"try_it_base": "./", "served": True, "version": __version__}
    files = {"index.html": _environment.get_template("served.html.j2").render(
        root="", site=context, lines=lines).encode()}
    files.update(_static_files())
    return files


def _static_files() -> dict[str, bytes]:
    static = resources.files("protoreg.registry.site") / "static"
    return {f"static/{name}": (static / name).read_bytes() for name in STATIC_FILES}


def load_site_data(path: Path) -> dict[str, Any]:
    """Read a ``site.json`` written by ``protoreg site`` (a file, or the directory holding it)."""
    file = path / DATA_FILE if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UsageError(
            f'Cannot read the site data "{file}" ({error}); write it with `protoreg site --out DIR`'
        ) from error
    from .data import FORMAT

    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(f'"{file}" is not site data of format {FORMAT}; write it again with `protoreg site --out DIR`')
    return data


def write_site(out: Path, files: Mapping[str, bytes]) -> list[str]:
    """Write ``files`` under ``out``, removing files a previous ``protoreg site`` left there.

    Returns the paths written or removed. Refuses a directory that holds other files and no
    ``site.json``, so pointing ``--out`` at the wrong place never deletes anything.
    """
    if out.exists() and not out.is_dir():
        raise UsageError(f'--out "{out}" is a file; name a directory for the site')
    existing = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) if out.exists() else []
    if existing and DATA_FILE not in existing:
        raise UsageError(
            f'--out "{out}" is not empty and holds no {DATA_FILE} from `protoreg site`; '
            "name a new or empty directory"
        )
    changed = []
    for path in existing:
        if path not in files:
            (out / path).unlink()
            changed.append(path)
    for path, content in files.items():
        target = out / path
        if target.is_file() and target.read_bytes() == content:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        changed.append(path)
    for directory in sorted((p for p in out.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(directory.iterdir()):
            directory.rmdir()
    return sorted(changed)


# -- views: what the templates loop over -----------------------------------------------------


def _model_view(model: Mapping[str, Any], served: Mapping[str, Collection[str]] | None) -> dict[str, Any]:
    serving = set(served.get(model["name"], ())) if served is not None else set()
    current = {line["version"] for line in model["lines"]}
    releases = [
        {
            **r,
            "proto_file": r["proto_path"].rsplit("/", 1)[-1],
            "current": r["version"] in current,
            "served": r["version"] in serving,
        }
        for r in model["releases"]
    ]
    lines = [{**line, "served": line["version"] in serving} for line in model["lines"]]
    pairs = [[d["from"], d["to"]] for d in model["diffs"]]
    by_pair = {(d["from"], d["to"]): d for d in model["diffs"]}
    versions = [r["version"] for r in releases]
    matrix = [{"version": a, "cells": [by_pair.get((a, b)) for b in versions[1:]]} for a in versions[:-1]]
    return {**model, "releases": releases, "lines": lines, "pairs": pairs, "matrix": matrix}


def _cell_title(cell: Cell, version: str) -> str:
    shape = describe_type(cell.facts) if cell.facts and cell.type else ""
    what = f"{cell.name} {shape}".strip()
    return {
        "added": f"{version}: added {what}",
        "renamed": f"{version}: renamed from {cell.before} to {cell.name}",
        "changed": f"{version}: {cell.name} changed from {cell.before} to {shape}",
        "unchanged": f"{version}: {what}",
        "removed": f"{version}: removed {cell.name}" + ("; number reserved" if cell.reserved else ""),
        "reserved": f"{version}: reserved" + (f" (was {cell.name})" if cell.name else ""),
        "absent": f"{version}: not used",
    }[cell.state]


def _ledger_view(model: Mapping[str, Any]) -> list[dict[str, Any]]:
    versions = model["ledger"]["versions"]
    sections = []
    for section in model["ledger"]["sections"]:
        rows = []
        for row in section["rows"]:
            cells = [Cell.from_dict(c) for c in row["cells"]]
            latest = next((c for c in reversed(cells) if c.name), cells[-1])
            rows.append({
                "number": row["number"],
                "name": latest.name,
                "eventful": any(c.state in ("renamed", "changed", "removed") for c in cells),
                "cells": [
                    {
                        "cell": c,
                        "version": v,
                        "type": describe_type((c.name, c.type, c.label, False)) if c.type else "",
                        "title": _cell_title(c, v),
                    }
                    for c, v in zip(cells, versions, strict=True)
                ],
            })
        sections.append({**section, "rows": rows,
                         "reserved_names": list(zip(versions, section["reserved_names"], strict=True))})
    return sections


def _field_changes(model: Mapping[str, Any], first: str, second: str) -> list[dict[str, Any]]:
    """The ledger rows whose cells differ between two releases, with the state between them."""
    versions = model["ledger"]["versions"]
    a, b = versions.index(first), versions.index(second)
    out = []
    for section in model["ledger"]["sections"]:
        for row in section["rows"]:
            before, after = Cell.from_dict(row["cells"][a]), Cell.from_dict(row["cells"][b])
            if before.facts == after.facts and before.reserved == after.reserved:
                continue
            state, was = transition(before.facts, after.facts, after.reserved)
            out.append({"kind": section["kind"], "scope": section["name"], "number": row["number"],
                        "state": state, "before": before, "after": after, "was": was,
                        "before_type": describe_type(before.facts) if before.facts and before.type else "",
                        "after_type": describe_type(after.facts) if after.facts and after.type else ""})
    return out


def _text_diff(model: Mapping[str, Any], first: str, second: str) -> list[dict[str, str]]:
    texts = {r["version"]: r["proto"] for r in model["releases"]}
    lines = difflib.unified_diff(
        texts[first].splitlines(), texts[second].splitlines(),
        fromfile=f"{model['name']} {first}", tofile=f"{model['name']} {second}", lineterm="", n=3,
    )
    out = []
    for line in lines:
        kind = "hunk" if line.startswith("@@") else "file" if line.startswith(("---", "+++")) else \
            "add" if line.startswith("+") else "del" if line.startswith("-") else "same"
        out.append({"kind": kind, "text": line})
    return out
