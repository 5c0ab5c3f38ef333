"""Loading ``proto_versions/`` into a descriptor pool at start-up.

The tree is compiled by the reference compiler (``protoc`` from grpcio-tools, in a subprocess) into
a FileDescriptorSet, which is loaded into a private :class:`DescriptorPool`; message classes are
built from it with ``message_factory``. No Python is generated and nothing is written. The same
pool also holds the descriptors of the standard services (health, reflection), so server
reflection can describe every service the server offers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import descriptor, descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from protoreg.registry.errors import ProtoregError
from protoreg.registry.naming import REGISTRY_PROTO_PATH, parse_package, read_legacy_rpc, read_release_header
from protoreg.registry.protoc import compile_descriptor_set, proto_files


class ProtosError(ProtoregError):
    """``proto_versions/`` is missing, does not compile, or lacks what a model needs."""


@dataclass(frozen=True)
class RenderedRelease:
    """One model file of ``proto_versions/``: the release it was rendered from, and its text."""

    model: str
    major: int
    version: str
    package: str
    path: str  # relative to proto_versions/
    content: str
    file: descriptor.FileDescriptor

    @property
    def legacy_rpc(self) -> str | None:
        """The legacy method path this line also answers (``// Legacy RPC:``, from ``protoreg adopt``)."""
        return read_legacy_rpc(self.content)

    @property
    def service(self) -> descriptor.ServiceDescriptor:
        services = list(self.file.services_by_name.values())
        if len(services) != 1:
            raise ProtosError(
                f'{self.path} declares {len(services)} services; a model package holds exactly one'
            )
        return services[0]


@dataclass
class ProtoTree:
    """A compiled ``proto_versions/``: one pool, the model releases in it, and their texts."""

    root: Path
    pool: descriptor_pool.DescriptorPool
    releases: dict[tuple[str, int], RenderedRelease] = field(default_factory=dict)
    _classes: dict[str, type[Message]] = field(default_factory=dict)

    def release(self, model: str, major: int) -> RenderedRelease | None:
        return self.releases.get((model, major))

    def message_class(self, full_name: str) -> type[Message]:
        """The message class of ``full_name``, built once and cached."""
        cls = self._classes.get(full_name)
        if cls is None:
            cls = message_factory.GetMessageClass(self.pool.FindMessageTypeByName(full_name))
            self._classes[full_name] = cls
        return cls

    @property
    def registry_file(self) -> descriptor.FileDescriptor | None:
        try:
            return self.pool.FindFileByName(REGISTRY_PROTO_PATH)
        except KeyError:
            return None


def _add_standard_files(pool: descriptor_pool.DescriptorPool, present: set[str]) -> None:
    """Health and reflection descriptors, so reflection can describe those services too."""
    for module in (health_pb2, reflection_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        if proto.name not in present:
            pool.AddSerializedFile(proto.SerializeToString())
            present.add(proto.name)


def load_protos(root: Path) -> ProtoTree:
    """Compile every ``.proto`` under ``root`` and index the model releases it holds."""
    if not root.is_dir():
        raise ProtosError(
            f"proto directory {root} does not exist; run `protoreg register MODEL_REF` to render it, "
            "or pass --protos DIR"
        )
    files = proto_files(root)
    if not files:
        raise ProtosError(f"{root} holds no .proto files; run `protoreg register MODEL_REF` first")
    file_set = compile_descriptor_set(root, files, include_imports=True)
    pool = descriptor_pool.DescriptorPool()
    present: set[str] = set()
    for proto in file_set.file:
        if proto.name not in present:
            pool.AddSerializedFile(proto.SerializeToString())
            present.add(proto.name)
    _add_standard_files(pool, present)
    tree = ProtoTree(root=root, pool=pool)
    for path in files:
        content = (root / path).read_text(encoding="utf-8")
        header = read_release_header(content)
        if header is None:
            continue  # not a model file (the registry service, or a hand-written file)
        header_model, header_version = header
        file = pool.FindFileByName(path)
        parsed = parse_package(file.package)
        if parsed is None or parsed[0] != header_model:
            raise ProtosError(
                f'{root / path}: package "{file.package}" does not match its release header '
                f'"{header_model}=={header_version}"; re-render it with `protoreg render`'
            )
        key = parsed
        tree.releases[key] = RenderedRelease(
            model=parsed[0],
            major=parsed[1],
            version=header_version,
            package=file.package,
            path=path,
            content=content,
            file=file,
        )
    return tree
