"""What a schema may hold so that it renders, compiles and stores the same on every backend.

:func:`check_schema_limits` runs at the end of schema extraction, before anything is numbered or
written, and refuses with one sentence:

- names too long to be a file name, a proto package or a database value: the same limits on
  SQLite (which does not enforce column lengths) and PostgreSQL (which does), so a schema that
  registers on one registers on the other;
- names that collide in the proto package scope, where protoc sees them as siblings: a class or
  enum named like the generated service (``IrisModelService``), and enum values, which protobuf
  places beside their enum, so ``Color.red_x`` and ``ColorRed.x`` (both ``COLOR_RED_X``) or two
  ``*_UNSPECIFIED`` zero values clash;
- a display name with a line break (it is printed in the header comment of the rendered file,
  where it could forge a ``// Release:`` line), and a version with build metadata (semver
  ignores it when ordering, so two such releases could never be told apart).

Registration also compiles every rendering with protoc before it commits
(:mod:`protoreg.registry.registration`); these checks make the common cases one clear sentence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from . import naming
from .errors import SchemaError

if TYPE_CHECKING:
    from .schema import ModelSchema

NAME_MAX = 100
"""Longest model, message, enum, field and enum-label name: short enough for a file name
(``<model>.proto`` on every file system) and far inside every column the registry stores it in."""
GENERATED_NAME_MAX = 250
"""Longest generated name (an enum value name, a wrapper message); the columns hold 300."""
DISPLAY_NAME_MAX = 200
"""The ``models.display_name`` column."""
VERSION_MAX = 100
"""The ``releases.version`` column."""


def _too_long(what: str, name: str, limit: int) -> str:
    shown = name if len(name) <= 60 else f"{name[:40]}...{name[-10:]}"
    return f'{what} "{shown}" has {len(name)} characters, more than the {limit} protoreg allows; shorten it'


def check_schema_limits(schema: ModelSchema) -> None:
    """Refuse a schema that could not render, compile or be stored the same everywhere."""
    model = schema.model

    def fail(path: str, problem: str) -> SchemaError:
        return SchemaError(model, path, problem)

    if len(model) > NAME_MAX:
        raise fail("", _too_long("qualified_name", model, NAME_MAX) + " (it becomes a file name and a package)")
    if any(ch in schema.display_name for ch in "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"):
        raise fail("", f"display_name {schema.display_name!r} has a line break; it is printed on one comment "
                       "line of the rendered file, so make it one line")
    if len(schema.display_name) > DISPLAY_NAME_MAX:
        raise fail("", _too_long("display_name", schema.display_name, DISPLAY_NAME_MAX))
    _check_version(schema, fail)

    service = naming.service_name(model)
    for message in schema.messages:
        limit = GENERATED_NAME_MAX if message.description.startswith("Generated wrapper") else NAME_MAX
        if len(message.name) > limit:
            raise fail(message.name, _too_long("message name", message.name, limit))
        for f in message.fields:
            for name in (f.name, *f.renamed_from):
                if len(name) > NAME_MAX:
                    raise fail(f"{message.name}.{f.name}"[:120], _too_long("field name", name, NAME_MAX))
    for enum in schema.enums:
        if len(enum.name) > NAME_MAX:
            raise fail(enum.name, _too_long("enum name", enum.name, NAME_MAX))
        for value in enum.values:
            if len(value.name) > GENERATED_NAME_MAX:
                raise fail(enum.name, _too_long("enum value name", value.name, GENERATED_NAME_MAX))
    for kind, name in [("class", m.name) for m in schema.messages] + [("enum", e.name) for e in schema.enums]:
        if name == service:
            raise fail(name, f'{kind} "{name}" has the name of the generated service "{service}" of model '
                             f'"{model}"; rename the {kind}')

    # Enum values are siblings of their enum in the package scope (C++ scoping rules).
    owners: dict[str, str] = {}
    for enum in schema.enums:
        zero = naming.enum_zero_name(enum.name)
        for value_name, label in [(zero, "its zero value"), *((v.name, f'value "{v.value}"') for v in enum.values)]:
            described = f'{label} of enum "{enum.name}"'
            previous = owners.get(value_name)
            if previous is not None:
                raise fail(enum.name, f'{described} and {previous} both become "{value_name}", and protobuf '
                                      "enum values share the package scope; rename one of the enums or values")
            owners[value_name] = described


def _check_version(schema: ModelSchema, fail: Callable[[str, str], SchemaError]) -> None:
    from .versioning import parse_version

    if len(schema.version) > VERSION_MAX:
        raise fail("", _too_long("version", schema.version, VERSION_MAX))
    try:
        version = parse_version(schema.version)
    except Exception:  # noqa: BLE001 - registration reports an unparsable version with its own sentence
        return
    if version.build:
        raise fail("", f'version "{schema.version}" has build metadata ("+{version.build}"), which semantic '
                       "versioning ignores when ordering releases, so two builds could not be told apart; "
                       f'drop it and declare "{version.major}.{version.minor}.{version.patch}"')
