"""Binding an installed model to the release rendered for its major line.

A model is served from the package of its major version (``<model>.v<major>``), and only when the
installed model is exactly the release that was rendered: same version (the file's
``// Release: model==version`` header) and the same schema (every message, field, type and enum
value the model declares is in the rendering, and nothing else). Anything else would serve a
contract that CI never checked, so the server refuses to start and names the command that fixes
it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor

from protoreg.registry.errors import ModelLoadError, ProtoregError
from protoreg.registry.loader import model_metadata
from protoreg.registry.naming import GENERATED_MESSAGES, REQUEST_MESSAGE, RESPONSE_MESSAGE, package_name, proto_path
from protoreg.registry.schema import ModelSchema, extract_schema
from protoreg.registry.typemap import DESCRIPTOR_SCALARS
from protoreg.registry.versioning import parse_version

from .compile import ProtoTree, RenderedRelease
from .convert import BindError, CodecBuilder, ModelCodec


class ReleaseMismatchError(ProtoregError):
    """The installed model is not the release rendered into ``proto_versions/``."""


@dataclass(frozen=True)
class ServedModel:
    """One model bound to its rendered release, ready to answer calls."""

    ref: str
    name: str
    display_name: str
    description: str
    version: str
    release: RenderedRelease
    instance: Any
    codec: ModelCodec
    schema_fingerprint: str = ""  # the schema's fingerprint: a reload keeps a model whose is unchanged

    @property
    def service_name(self) -> str:
        return self.release.service.full_name

    @property
    def major(self) -> int:
        return self.release.major


def _type_name(full_name: str, package: str) -> str:
    return full_name.removeprefix(f"{package}.")


def describe_field(fd: descriptor.FieldDescriptor, package: str) -> str:
    """A descriptor field as ``double``, ``repeated Species`` or ``map<string, XList>``."""

    def element(f: descriptor.FieldDescriptor) -> str:
        if f.message_type is not None:
            return _type_name(f.message_type.full_name, package)
        if f.enum_type is not None:
            return _type_name(f.enum_type.full_name, package)
        return DESCRIPTOR_SCALARS.get(f.type, str(f.type))

    if fd.is_repeated:
        entry = fd.message_type
        if entry is not None and entry.GetOptions().map_entry:
            key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
            return f"map<{element(key)}, {element(value)}>"
        return f"repeated {element(fd)}"
    return element(fd)


def schema_differences(schema: ModelSchema, release: RenderedRelease) -> list[str]:
    """How the model's schema differs from the rendered file (empty when they match)."""
    pool = release.file.pool
    package = release.package
    found: list[str] = []
    declared = {m.name for m in schema.messages} | set(GENERATED_MESSAGES)
    for name in release.file.message_types_by_name:
        if name not in declared:
            found.append(f'message "{name}" is rendered but the model no longer declares it')
    for message in schema.messages:
        try:
            msg_type = pool.FindMessageTypeByName(f"{package}.{message.name}")
        except KeyError:
            found.append(f'message "{message.name}" is declared but not rendered')
            continue
        rendered = {f.name: f for f in msg_type.fields}
        for spec in message.fields:
            fd = rendered.pop(spec.name, None)
            if fd is None:
                found.append(f'field "{message.name}.{spec.name}" is declared but not rendered')
                continue
            want, have = spec.type_text, describe_field(fd, package)
            if want != have:
                found.append(f'field "{message.name}.{spec.name}" is "{want}" but rendered as "{have}"')
        for name in rendered:
            found.append(f'field "{message.name}.{name}" is rendered but the model no longer declares it')
    for spec_enum in schema.enums:
        try:
            enum_type = pool.FindEnumTypeByName(f"{package}.{spec_enum.name}")
        except KeyError:
            found.append(f'enum "{spec_enum.name}" is declared but not rendered')
            continue
        rendered_values = {v.name for v in enum_type.values if v.number != 0}
        for value in spec_enum.values:
            if value.name not in rendered_values:
                found.append(f'enum value "{value.name}" is declared but not rendered')
            rendered_values.discard(value.name)
        for name in sorted(rendered_values):
            found.append(f'enum value "{name}" is rendered but the model no longer declares it')
    return found


def bind_model(model: Any, tree: ProtoTree, ref: str | None = None) -> ServedModel:
    """Check ``model`` against its rendered release, compile its codecs and instantiate it."""
    meta = model_metadata(model)
    schema = extract_schema(model)
    name = meta.qualified_name
    ref = ref or name
    major = parse_version(meta.version).major
    fix = f"run `protoreg register {ref}` to record the release and re-render {tree.root}, then serve again"
    release = tree.release(name, major)
    if release is None:
        package = package_name(name, major)
        raise ReleaseMismatchError(
            f'Model "{name}" {meta.version} has no rendered release in {tree.root} '
            f"(looked for {proto_path(package, name)}, package {package}); {fix}"
        )
    if release.version != meta.version:
        raise ReleaseMismatchError(
            f'Model "{name}" is installed at version {meta.version} but {tree.root / release.path} '
            f"was rendered from release {name}=={release.version}; {fix}"
        )
    differences = schema_differences(schema, release)
    if differences:
        shown = "; ".join(differences[:5])
        if len(differences) > 5:
            shown += f"; and {len(differences) - 5} more"
        raise ReleaseMismatchError(
            f'Model "{name}" {meta.version} does not match its rendered release {name}=={release.version} '
            f"in {tree.root / release.path}: {shown}. A changed schema needs a new version: bump the "
            f"model's version and {fix}"
        )
    builder = CodecBuilder(schema, release.package)
    try:
        request_type = tree.pool.FindMessageTypeByName(f"{release.package}.{REQUEST_MESSAGE}")
        response_type = tree.pool.FindMessageTypeByName(f"{release.package}.{RESPONSE_MESSAGE}")
        codec = ModelCodec(
            input_schema=meta.input_schema,
            output_schema=meta.output_schema,
            request_class=tree.message_class(request_type.full_name),
            response_class=tree.message_class(response_type.full_name),
            request=builder.message(meta.input_schema, request_type),
            response=builder.message(meta.output_schema, response_type),
        )
    except (BindError, KeyError) as error:
        raise ReleaseMismatchError(
            f'Model "{name}" {meta.version} cannot be bound to {tree.root / release.path}: {error}; {fix}'
        ) from error
    instance = model
    if isinstance(model, type):
        try:
            instance = model()
        except Exception as error:  # the model's own constructor: report it, do not crash
            raise ModelLoadError(
                f'Model "{name}" {meta.version} could not be created ({type(error).__name__}: {error})'
            ) from error
    return ServedModel(
        ref=ref,
        name=name,
        display_name=meta.display_name,
        description=meta.description,
        version=meta.version,
        release=release,
        instance=instance,
        codec=codec,
        schema_fingerprint=schema.fingerprint,
    )
