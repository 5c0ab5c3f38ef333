"""The site data: everything the registry browser shows, read from an open registry.

:func:`site_data` returns one JSON-compatible document (``FORMAT`` 1), written as ``site.json``
next to the pages so a server that never opens the database can render the same pages:

- ``models``, by name, each with ``display_name``, ``description`` and
  - ``releases``, in registration order: ``version``, ``created_at`` (ISO 8601, UTC), ``date``
    (as ``protoreg history`` prints it), ``package``, ``major``, ``proto_path``, ``changes`` (the
    lines ``history`` prints), ``bump`` (the checker's verdict against the release before:
    declared and required bump, passed, summary; ``null`` for the first release) and ``proto``
    (the stored ``.proto`` text);
  - ``lines``: the newest release of each major line, what ``proto_versions/`` holds and
    ``protoreg serve`` serves;
  - ``ledger``: the field ledger (:mod:`protoreg.registry.ledger`), built from the same field maps that
    ``protoreg fields --format json`` prints;
  - ``diffs``: the checker's report for pairs of releases, exactly what ``protoreg diff MODEL
    FROM TO --format json`` prints plus its summary line, and ``all_pairs`` saying whether every
    pair is there (see :func:`diff_pairs`);
  - ``try_it``: for each major line, the ``Predict`` method's path and one input description per
    field of its request, in the proto3 JSON mapping.

Library code: reads, returns data, never prints and never writes to the registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import __version__, ir
from ..compat.engine import diff_releases
from ..compat.findings import Report
from ..fieldmap import field_map
from ..ledger import build_ledger

if TYPE_CHECKING:
    from ..store import Registry, ReleaseInfo

FORMAT = 1

ALL_PAIRS_UP_TO = 30
"""Up to this many releases, a model's site holds the checker's findings for every pair of
releases (435 pairs at 30). Beyond it, the pairs that answer the usual questions: each release
against the one before, and every release against the current release of each major line."""

# The proto3 JSON mapping: 64-bit integers travel as strings, 32-bit ones as numbers, bytes as
# base64, Timestamp and Duration as RFC 3339 and "1.5s" strings, enums by value name.
_JSON_KINDS = {
    **{t: "number" for t in ("double", "float")},
    **{t: "int" for t in ("int32", "uint32", "sint32", "fixed32", "sfixed32")},
    **{t: "int64" for t in ("int64", "uint64", "sint64", "fixed64", "sfixed64")},
    "bool": "bool",
    "string": "string",
    "bytes": "bytes",
    "google.protobuf.Timestamp": "timestamp",
    "google.protobuf.Duration": "duration",
}
_PLACEHOLDERS = {
    "number": "1.5",
    "int": "42",
    "int64": "42",
    "string": "text",
    "bytes": "base64, e.g. aGVsbG8=",
    "timestamp": "2024-01-31T12:00:00Z",
    "duration": "1.5s",
}


def site_data(registry: Registry) -> dict[str, Any]:
    """The whole registry as the browser shows it (see the module docstring for the format)."""
    models = [model_data(registry.releases(name)) for name in registry.model_names()]
    return {"format": FORMAT, "protoreg_version": __version__, "models": [m for m in models if m["releases"]]}


def model_data(releases: Sequence[ReleaseInfo]) -> dict[str, Any]:
    """One model's part of the site data, from its releases in registration order."""
    if not releases:
        return {"releases": []}
    newest = releases[-1]
    versions = [r.version for r in releases]
    lines = current_releases(releases)
    pairs = diff_pairs(versions, [line.version for line in lines])
    reports = {(a, b): diff_releases(releases, releases[a], releases[b]) for a, b in pairs}
    return {
        "name": newest.model,
        "display_name": newest.package.display_name or newest.model,
        "description": newest.package.description,
        "releases": [
            _release(r, reports.get((i - 1, i)) if i else None) for i, r in enumerate(releases)
        ],
        "lines": [{"major": r.package.major, "version": r.version, "package": r.package.package} for r in lines],
        "ledger": build_ledger([field_map(r.package) for r in releases]).to_dict(),
        "diffs": [
            {"from": versions[a], "to": versions[b], **report_data(reports[(a, b)])} for a, b in pairs
        ],
        "all_pairs": len(pairs) == len(versions) * (len(versions) - 1) // 2,
        "try_it": [try_it(r.package) for r in lines],
    }


def current_releases(releases: Sequence[ReleaseInfo]) -> list[ReleaseInfo]:
    """The last registered release of each major line, by major: what ``proto_versions/`` holds."""
    last: dict[int, ReleaseInfo] = {}
    for release in releases:
        last[release.package.major] = release
    return [last[major] for major in sorted(last)]


def diff_pairs(versions: Sequence[str], current: Sequence[str]) -> list[tuple[int, int]]:
    """Which ordered pairs ``(from, to)`` of release indexes get the checker's findings.

    Every pair when there are at most :data:`ALL_PAIRS_UP_TO` releases; otherwise each release
    against the one before and every earlier release against each current release. The number
    of checks then grows linearly with the releases instead of quadratically.
    """
    n = len(versions)
    if n <= ALL_PAIRS_UP_TO:
        return [(a, b) for b in range(n) for a in range(b)]
    targets = {versions.index(v) for v in current}
    chosen = {(b - 1, b) for b in range(1, n)} | {(a, b) for b in targets for a in range(b)}
    return sorted(chosen, key=lambda p: (p[1], p[0]))


def report_data(report: Report) -> dict[str, Any]:
    """A checker report as ``protoreg diff --format json`` prints it, with its summary line."""
    return {**report.to_dict(), "summary": report.summary(), "note": report.note}


def _release(release: ReleaseInfo, report: Report | None) -> dict[str, Any]:
    created = release.created_at
    return {
        "version": release.version,
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "date": created.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "package": release.package.package,
        "major": release.package.major,
        "proto_path": release.package.proto_path,
        "changes": list(release.changes),
        "bump": None if report is None else {
            "declared": report.declared_bump,
            "required": report.required_bump,
            "passed": report.passed,
            "summary": report.summary(),
        },
        "proto": release.proto_text,
    }


# -- try it --------------------------------------------------------------------------------


def json_name(field: ir.Field) -> str:
    """The field's proto3 JSON name: ``json_name`` if set, else protobuf's lowerCamelCase."""
    if field.json_name:
        return field.json_name
    out: list[str] = []
    upper = False
    for char in field.name:
        if char == "_":
            upper = True
        else:
            out.append(char.upper() if upper else char)
            upper = False
    return "".join(out)


def try_it(package: ir.Package) -> dict[str, Any]:
    """What the try-it form of one served package needs: the method path and its request's inputs."""
    service, method = next(
        (s, m) for s in package.services for m in s.methods if m.name == "Predict"
    )
    request = package.message(method.input_type)
    assert request is not None, f"{package.package} has no message {method.input_type}"
    return {
        "major": package.major,
        "version": package.version,
        "package": package.package,
        "service": f"{package.package}.{service.name}",
        "path": f"{package.package}.{service.name}/{method.name}",
        "request": method.input_type,
        "fields": [_input(package, f) for f in request.fields],
    }


def _input(package: ir.Package, field: ir.Field) -> dict[str, Any]:
    kind = "json"
    options: list[str] = []
    if field.label in ("repeated", "map"):
        kind = "json"
    elif field.kind == "enum":
        kind = "enum"
        enum = package.enum(field.type)
        options = [v.name for v in enum.values] if enum is not None else []
    else:
        kind = _JSON_KINDS.get(field.type, "json")
    if kind == "json":
        placeholder = "{}" if field.label == "map" or (field.label != "repeated" and field.kind == "message") else "[]"
    else:
        placeholder = _PLACEHOLDERS.get(kind, "")
    return {
        "name": field.name,
        "json_name": json_name(field),
        "number": field.number,
        "type": f"{field.declaration_label}{field.proto_type}".strip(),
        "kind": kind,
        "required": field.required,
        "description": field.description,
        "options": options,
        "placeholder": placeholder,
    }
