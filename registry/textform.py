"""The registry's text form: one model's :class:`~protoreg.registry.records.ModelRecord` as text.

The text form is what a team commits to git (``proto_registry/<model>.txt``, see
:mod:`protoreg.registry.textstore`): deterministic (the same model always gives the same bytes),
line-oriented (a release is a block of lines, a field allocation one line, so a pull request
shows what a release adds and two branches that both add a release to one model conflict in
git), and complete (a database rebuilt from it holds what the original held). Layout::

    # protoreg registry, text form 1 ...           comment lines (ignored when read)
    model "iris_model"
    display_name "Iris Model"
    description "..."
    created_at "2024-05-01T12:00:00Z"

    release "1.0.0"                                one block per release, oldest first
      follows null                                 the release before it: a merge that keeps two
      created_at "2024-05-01T12:00:00Z"            branches' releases breaks this chain
      fingerprint "3f2a..."
      registered_by "0.1.0"
      change "added PredictRequest.sepal_length = 1"
      reserved {"kind": "message", "scope": "PredictRequest", "start": 3, "end": 3}
      schema                                       the schema tree and the numbered snapshot,
        {...}                                      as JSON (objects of plain values on one line)
      snapshot
        {...}

    adoption                                       only for a model adopted from an existing API
      {"plan": {...}, "source": "...", "version": "1.0.0"}

    ledger                                         every number ever allocated
      message "PredictRequest"
        allocation {"number": 1, "name": "sepal_length", ...}

Every value is one JSON value, so names and descriptions with quotes or newlines stay on their
line. The rendered ``.proto`` of a release is not written when it is what rendering the snapshot
gives (always, for a healthy registry); otherwise it is kept as ``proto_text "..."``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import ProtoregError
from .records import (
    AdoptionRecord,
    AllocationRecord,
    ModelRecord,
    ReleaseRecord,
    ReservationRecord,
    ScopeKind,
    ScopeRecord,
    utc,
)

FORMAT = 1
HEADER = (
    f"# protoreg registry, text form {FORMAT}: one model, every release. Written by protoreg\n"
    "# (register, import, export): do not edit by hand; `protoreg import` rebuilds a database from it.\n"
)
_INDENT = "  "


class TextFormError(ProtoregError):
    """A text-form file that cannot be read: damaged, hand-edited, or two branches merged into one."""


# -- writing -------------------------------------------------------------------------------


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _stamp(moment: datetime) -> str:
    moment = utc(moment)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


def _flat(value: Any) -> bool:
    """Whether ``value`` prints on one line: it holds no list of objects (a field, a value or a
    type is one line; a message, with its list of fields, is not)."""
    if isinstance(value, dict):
        return all(_flat(v) for v in value.values())
    if isinstance(value, list):
        return all(not isinstance(v, dict) and _flat(v) for v in value)
    return True


def _block(value: Any, indent: str) -> Iterator[str]:
    """JSON, one line per object of plain values; sorted keys, so the same data gives the same text."""
    if _flat(value):
        yield indent + json.dumps(value, ensure_ascii=False, sort_keys=True)
        return
    items: list[tuple[str, Any]]
    if isinstance(value, dict):
        opening, closing = "{", "}"
        items = [(f"{json.dumps(k, ensure_ascii=False)}: ", v) for k, v in sorted(value.items())]
    else:
        opening, closing = "[", "]"
        items = [("", v) for v in value]
    yield indent + opening
    inner = indent + _INDENT
    for i, (prefix, item) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        lines = list(_block(item, inner))
        lines[0] = inner + prefix + lines[0][len(inner):]
        lines[-1] += comma
        yield from lines
    yield indent + closing


def _reservation(r: ReservationRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": r.kind, "scope": r.scope}
    if r.name is not None:
        out["name"] = r.name
    if r.start is not None or r.end is not None:
        out["start"], out["end"] = r.start, r.end
    return out


def _allocation(kind: str, a: AllocationRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"number": a.number, "name": a.name, "active": a.active, "since": a.since}
    if kind == "message":
        out["type_key"] = a.type_key
        out["names"] = list(a.names)
    return out


def format_model(record: ModelRecord) -> str:
    """The text form of one model: the same record always gives the same text."""
    from .ir import package_from_dict
    from .render import render_package

    lines = [
        HEADER.rstrip("\n"),
        f"model {_json(record.name)}",
        f"display_name {_json(record.display_name)}",
        f"description {_json(record.description)}",
        f"created_at {_json(_stamp(record.created_at))}",
    ]
    previous: str | None = None
    for release in record.releases:
        lines += ["", f"release {_json(release.version)}"]
        body = [
            f"follows {_json(previous)}",
            f"created_at {_json(_stamp(release.created_at))}",
            f"fingerprint {_json(release.fingerprint)}",
            f"registered_by {_json(release.registered_by)}",
        ]
        body += [f"change {_json(change)}" for change in release.changes]
        body += [f"reserved {_json(_reservation(r))}" for r in release.reservations]
        lines += [_INDENT + line for line in body]
        lines.append(f"{_INDENT}schema")
        lines += _block(release.schema, _INDENT * 2)
        lines.append(f"{_INDENT}snapshot")
        lines += _block(release.snapshot, _INDENT * 2)
        if release.proto_text != render_package(package_from_dict(dict(release.snapshot))):
            lines.append(f"{_INDENT}proto_text {_json(release.proto_text)}")
        previous = release.version
    if record.adoption is not None:
        adoption = {"version": record.adoption.version, "source": record.adoption.source,
                    "plan": dict(record.adoption.plan)}
        lines += ["", "adoption"]
        lines += _block(adoption, _INDENT)
    lines += ["", "ledger"]
    for scope in record.ledger:
        lines.append(f"{_INDENT}{scope.kind} {_json(scope.name)}")
        lines += [f"{_INDENT * 2}allocation {_json(_allocation(scope.kind, a))}" for a in scope.allocations]
    return "\n".join(lines) + "\n"


# -- reading -------------------------------------------------------------------------------


@dataclass
class _Line:
    number: int
    depth: int
    keyword: str
    value: str


class _Reader:
    def __init__(self, text: str, where: str) -> None:
        self.where = where
        self.lines: list[_Line] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip() or raw.startswith("#"):
                continue
            stripped = raw.lstrip(" ")
            indent = len(raw) - len(stripped)
            if indent % len(_INDENT):
                raise self.fail(number, "is indented by an odd number of spaces")
            keyword, _, value = stripped.partition(" ")
            self.lines.append(_Line(number, indent // len(_INDENT), keyword, value))
        self.pos = 0

    def fail(self, number: int, problem: str) -> TextFormError:
        return TextFormError(
            f"{self.where}:{number} {problem}; the text form is written by protoreg only: restore the file "
            "from git (if a merge conflicted here, two branches registered releases of this model: keep one "
            "branch's file and run `protoreg register` again for the other's release)"
        )

    def peek(self) -> _Line | None:
        return self.lines[self.pos] if self.pos < len(self.lines) else None

    def take(self, keyword: str, depth: int) -> _Line:
        line = self.peek()
        if line is None:
            last = self.lines[-1].number if self.lines else 0
            raise self.fail(last, f'ends where "{keyword}" was expected')
        if line.keyword != keyword or line.depth != depth:
            raise self.fail(line.number, f'has "{line.keyword}" where "{keyword}" was expected')
        self.pos += 1
        return line

    def value(self, line: _Line) -> Any:
        try:
            return json.loads(line.value)
        except json.JSONDecodeError as error:
            raise self.fail(line.number, f'has a value that is not JSON ({error.msg}): "{line.value[:60]}"') from error

    def typed(self, line: _Line, kind: type | tuple[type, ...]) -> Any:
        value = self.value(line)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
            raise self.fail(line.number, f'has "{line.keyword}" {line.value[:60]}, which is not what it should be')
        return value

    def field(self, keyword: str, depth: int, kind: type | tuple[type, ...]) -> Any:
        return self.typed(self.take(keyword, depth), kind)

    def stamp(self, keyword: str, depth: int) -> datetime:
        line = self.take(keyword, depth)
        text = self.typed(line, str)
        try:
            return utc(datetime.fromisoformat(text))
        except ValueError as error:
            raise self.fail(line.number, f'has a date that is not ISO 8601: "{text}"') from error

    def block(self, keyword: str, depth: int) -> Any:
        head = self.take(keyword, depth)
        if head.value:
            raise self.fail(head.number, f'has a value after "{keyword}"; its JSON goes on the lines below')
        parts: list[str] = []
        while (line := self.peek()) is not None and line.depth > depth:
            parts.append(f"{line.keyword} {line.value}".rstrip())
            self.pos += 1
        try:
            return json.loads("\n".join(parts))
        except json.JSONDecodeError as error:
            raise self.fail(head.number, f'has a "{keyword}" block that is not JSON ({error.msg})') from error

    def repeated(self, keyword: str, depth: int) -> Iterator[_Line]:
        while (line := self.peek()) is not None and line.keyword == keyword and line.depth == depth:
            self.pos += 1
            yield line


def _reservation_from(reader: _Reader, line: _Line) -> ReservationRecord:
    data = reader.typed(line, dict)
    kind = data.get("kind")
    if kind not in ("message", "enum") or not isinstance(data.get("scope"), str):
        raise reader.fail(line.number, "has a reservation without a kind (message or enum) and a scope")
    return ReservationRecord(kind, data["scope"], data.get("start"), data.get("end"), data.get("name"))


def _allocation_from(reader: _Reader, line: _Line, kind: str, versions: set[str]) -> AllocationRecord:
    data = reader.typed(line, dict)
    try:
        allocation = AllocationRecord(
            number=int(data["number"]),
            name=str(data["name"]),
            active=bool(data["active"]),
            since=str(data["since"]),
            names=tuple(data["names"]) if kind == "message" else (),
            type_key=str(data["type_key"]) if kind == "message" else "",
        )
    except (KeyError, TypeError, ValueError) as error:
        raise reader.fail(line.number, f"has an allocation without {error}") from error
    if allocation.since not in versions:
        raise reader.fail(line.number, f'has an allocation since release "{allocation.since}", which the file lacks')
    return allocation


def parse_model(text: str, where: str) -> ModelRecord:
    """Read one model's text form; ``where`` (a file name) is named in errors with the line."""
    from .ir import package_from_dict
    from .render import render_package

    reader = _Reader(text, where)
    name = reader.field("model", 0, str)
    display_name = reader.field("display_name", 0, str)
    description = reader.field("description", 0, str)
    created_at = reader.stamp("created_at", 0)
    releases: list[ReleaseRecord] = []
    seen: dict[str, int] = {}
    for head in reader.repeated("release", 0):
        version = reader.typed(head, str)
        if version in seen:
            raise reader.fail(head.number, f'has release "{version}" twice (first at line {seen[version]}): '
                                           "two branches registered it")
        seen[version] = head.number
        follows_line = reader.take("follows", 1)
        follows = reader.typed(follows_line, (str, type(None)))
        expected = releases[-1].version if releases else None
        if follows != expected:
            raise reader.fail(
                follows_line.number,
                f'has release "{version}" following "{follows}", but the release before it is "{expected}": two '
                f"branches registered releases of {name} side by side",
            )
        release_created = reader.stamp("created_at", 1)
        fingerprint = reader.field("fingerprint", 1, str)
        registered_by = reader.field("registered_by", 1, str)
        changes = tuple(reader.typed(line, str) for line in reader.repeated("change", 1))
        reservations = tuple(_reservation_from(reader, line) for line in reader.repeated("reserved", 1))
        schema = reader.block("schema", 1)
        snapshot = reader.block("snapshot", 1)
        if not isinstance(schema, dict) or not isinstance(snapshot, dict):
            raise reader.fail(head.number, f'has release "{version}" whose schema or snapshot is not a JSON object')
        proto_lines = list(reader.repeated("proto_text", 1))
        proto_text = (reader.typed(proto_lines[0], str) if proto_lines
                      else render_package(package_from_dict(snapshot)))
        releases.append(ReleaseRecord(version, release_created, fingerprint, registered_by, changes, reservations,
                                      schema, snapshot, proto_text))
    adoption = None
    if (line := reader.peek()) is not None and line.keyword == "adoption" and line.depth == 0:
        data = reader.block("adoption", 0)
        if (not isinstance(data, dict) or data.get("version") not in seen or not isinstance(data.get("source"), str)
                or not isinstance(data.get("plan"), dict)):
            raise reader.fail(line.number, "has an adoption without the version of one of its releases, a source "
                                           "and a plan")
        adoption = AdoptionRecord(data["version"], data["source"], data["plan"])
    reader.take("ledger", 0)
    versions = set(seen)
    scopes: list[ScopeRecord] = []
    while (line := reader.peek()) is not None and line.depth == 1 and line.keyword in ("message", "enum"):
        reader.pos += 1
        kind: ScopeKind = "message" if line.keyword == "message" else "enum"
        allocations = tuple(_allocation_from(reader, a, kind, versions) for a in reader.repeated("allocation", 2))
        scopes.append(ScopeRecord(kind, reader.typed(line, str), allocations))
    leftover = reader.peek()
    if leftover is not None:
        raise reader.fail(leftover.number, f'has "{leftover.keyword}" where the file should end')
    return ModelRecord(name, display_name, description, created_at, tuple(releases), tuple(scopes), adoption)


def same_content(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two JSON objects hold the same data (key order aside)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
