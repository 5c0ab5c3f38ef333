"""Compiling ``.proto`` files with the reference compiler, ``protoc`` from grpcio-tools.

Used to validate renderings, to read arbitrary ``.proto`` trees for ``protoreg breaking``, and by
the server to build descriptors at start-up. ``protoc`` runs in a subprocess so its diagnostics
can be captured and reported.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

from google.protobuf import descriptor_pb2

from .errors import ProtoregError


class ProtocError(ProtoregError):
    """``protoc`` refused the input; the message holds its diagnostics."""


def well_known_include() -> Path:
    """The directory holding ``google/protobuf/*.proto`` shipped with grpcio-tools."""
    return Path(str(resources.files("grpc_tools") / "_proto"))


def vendored_include() -> Path:
    """The directory holding ``buf/validate/validate.proto`` (protovalidate's rules), vendored in
    protoreg so a rendering with ``buf.validate`` rules compiles offline."""
    return Path(str(resources.files("protoreg.registry") / "proto"))


VALIDATE_PROTO = "buf/validate/validate.proto"
"""Where protovalidate's rule vocabulary sits, in ``proto_versions/`` and in :func:`vendored_include`."""


def proto_files(root: Path) -> list[str]:
    """Every ``.proto`` file under ``root``, relative to it, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.proto"))


def run_protoc(root: Path, files: list[str], extra_args: list[str]) -> None:
    args = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={root}",
        f"--proto_path={well_known_include()}",
        f"--proto_path={vendored_include()}",
        *extra_args,
        *files,
    ]
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise ProtocError(f"protoc could not compile {root}: {detail}")


def compile_descriptor_set(
    root: Path, files: list[str] | None = None, include_imports: bool = True
) -> descriptor_pb2.FileDescriptorSet:
    """Compile ``files`` (default: every .proto under ``root``) into a FileDescriptorSet."""
    files = proto_files(root) if files is None else files
    if not files:
        raise ProtocError(f"no .proto files found under {root}")
    with tempfile.TemporaryDirectory(prefix="protoreg-protoc-") as tmp:
        out = Path(tmp) / "descriptors.binpb"
        extra = [f"--descriptor_set_out={out}", "--include_source_info"]
        if include_imports:
            extra.append("--include_imports")
        run_protoc(root, files, extra)
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def compile_python(root: Path, out_dir: Path, files: list[str] | None = None, grpc: bool = True) -> None:
    """Generate ``_pb2`` (and ``_pb2_grpc``) modules for ``files`` into ``out_dir``."""
    files = proto_files(root) if files is None else files
    out_dir.mkdir(parents=True, exist_ok=True)
    extra = [f"--python_out={out_dir}", f"--pyi_out={out_dir}"]
    if grpc:
        extra.append(f"--grpc_python_out={out_dir}")
    run_protoc(root, files, extra)


def compile_texts(files: dict[str, str]) -> descriptor_pb2.FileDescriptorSet:
    """Compile ``.proto`` texts given as ``{path: text}`` (paths relative to one root)."""
    with tempfile.TemporaryDirectory(prefix="protoreg-check-") as tmp:
        root = Path(tmp) / "protos"
        for path, text in files.items():
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        return compile_descriptor_set(root, sorted(files), include_imports=False)
