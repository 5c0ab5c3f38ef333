"""Naming and layout: every name protoreg gives to a proto element, file or package.

One home for the rules DESIGN.md states under "Proto layout and naming": the package of a major
line (``iris_model.v1``) and its file (``iris_model/v1/iris_model.proto``), the service
(``IrisModelService``) with its RPCs and messages, the generated wrapper messages for nested
containers (``DoubleList``, ``Int64DoubleMap``), enum value names (``SPECIES_SETOSA``, with
``SPECIES_UNSPECIFIED = 0``), the names a model's classes and fields may have, and the release
header the template writes and the server reads back. Schema extraction, numbering, the IR,
rendering and the server all ask this module; none of them spells a name itself.
"""

from __future__ import annotations

import re

# -- what authors may name things -------------------------------------------------------------

MODEL_NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
"""A model's ``qualified_name``: lower_snake_case, because it becomes the proto package."""
FIELD_NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
MESSAGE_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
"""Messages and enums: PascalCase, as buf's STANDARD lint wants."""
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def upper_snake(text: str) -> str:
    """``"Iris-Setosa"`` -> ``"IRIS_SETOSA"``; ``"IrisModel"`` -> ``"IRIS_MODEL"``."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    text = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")
    return text.upper()


def pascal_case(text: str) -> str:
    """``"iris_model"`` -> ``"IrisModel"``."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", text) if part)


# -- packages and files ------------------------------------------------------------------------

_MODEL_PACKAGE = re.compile(r"^(?P<model>[a-z][a-z0-9_]*)\.v(?P<major>\d+)$")


def package_name(model: str, major: int) -> str:
    """The proto package of one major line: ``iris_model.v1``."""
    return f"{model}.v{major}"


def parse_package(package: str) -> tuple[str, int] | None:
    """``"iris_model.v1"`` -> ``("iris_model", 1)``; None for a package protoreg did not name."""
    match = _MODEL_PACKAGE.match(package)
    return (match["model"], int(match["major"])) if match else None


def proto_path(package: str, model: str) -> str:
    """A model file's path inside ``proto_versions/``: the directory matches the package."""
    return f"{package.replace('.', '/')}/{model}.proto"


REGISTRY_PACKAGE = "protoreg.registry.v1"
REGISTRY_PROTO_PATH = proto_path(REGISTRY_PACKAGE, "registry")

# -- the release header ------------------------------------------------------------------------

_RELEASE_HEADER = re.compile(r"^// Release: (?P<model>[A-Za-z0-9_.]+)==(?P<version>\S+)\s*$", re.MULTILINE)


def release_header(model: str, version: str) -> str:
    """The comment line that says which release a model file was rendered from."""
    return f"// Release: {model}=={version}"


def read_release_header(text: str) -> tuple[str, str] | None:
    """The ``(model, version)`` of a rendered file's release header, or None when it has none."""
    # Only the header, above ``syntax``: a description printed as a comment further down cannot
    # pose as the release header.
    match = _RELEASE_HEADER.search(text.split("\nsyntax ", 1)[0])
    return (match["model"], match["version"]) if match else None


_LEGACY_RPC_HEADER = re.compile(r"^// Legacy RPC: (?P<path>/[A-Za-z0-9_.]+/[A-Za-z0-9_]+)\s*$", re.MULTILINE)


def legacy_header(source: str, request: str, response: str, rpc: str) -> str:
    """The comment lines of a line adopted from an existing API (``protoreg adopt``): the file it
    came from, which messages became the request and the response, and the legacy RPC path the
    server also answers (read back by :func:`read_legacy_rpc`)."""
    text = f"// Adopted from: {source} ({request} -> {REQUEST_MESSAGE}, {response} -> {RESPONSE_MESSAGE})"
    if rpc:
        text += f"\n// Legacy RPC: {rpc}"
    return text


def read_legacy_rpc(text: str) -> str | None:
    """The ``// Legacy RPC: /pkg.Service/Method`` of a rendered file, if it has one."""
    match = _LEGACY_RPC_HEADER.search(text)
    return match.group("path") if match else None


# -- the service and its messages --------------------------------------------------------------

REQUEST_MESSAGE = "PredictRequest"
RESPONSE_MESSAGE = "PredictResponse"
STREAM_REQUEST_MESSAGE = "PredictStreamRequest"
STREAM_RESPONSE_MESSAGE = "PredictStreamResponse"
STREAM_REQUEST_FIELD = "request"
STREAM_RESPONSE_FIELD = "response"
PREDICT_METHOD = "Predict"
PREDICT_STREAM_METHOD = "PredictStream"
GENERATED_MESSAGES = (STREAM_REQUEST_MESSAGE, STREAM_RESPONSE_MESSAGE)
"""Messages protoreg adds around the model's own; no numbering history of their own."""
RESERVED_MESSAGE_NAMES = frozenset({REQUEST_MESSAGE, RESPONSE_MESSAGE, *GENERATED_MESSAGES})
"""Names a model's classes may not take: the RPC messages are generated."""


def service_name(model: str) -> str:
    """``iris_model`` -> ``IrisModelService``."""
    return f"{pascal_case(model)}Service"


# -- generated names inside a model ------------------------------------------------------------

LIST_WRAPPER_FIELD = "values"
MAP_WRAPPER_FIELD = "entries"


def type_title(kind: str, name: str) -> str:
    """The part of a wrapper's name that names its element: ``Double``, ``Point``."""
    return pascal_case(name) if kind == "scalar" else name.rsplit(".", 1)[-1]


def list_wrapper_name(element_title: str) -> str:
    """The message that holds one list, for ``list[list[X]]``: ``DoubleList``."""
    return f"{element_title}List"


def map_wrapper_name(key_type: str, element_title: str) -> str:
    """The message that holds one map: ``DoubleMap`` (string keys), ``Int64DoubleMap``."""
    key_title = "" if key_type == "string" else pascal_case(key_type)
    return f"{key_title}{element_title}Map"


def literal_enum_name(message: str, field: str) -> str:
    """The enum a ``Literal["a", "b"]`` field becomes: ``PredictRequest`` + ``mood`` -> ``PredictRequestMood``."""
    return f"{message}{pascal_case(field)}"


def enum_value_name(enum: str, label: str) -> str:
    """``("Species", "setosa")`` -> ``SPECIES_SETOSA``: values carry their enum's prefix (buf STANDARD)."""
    return f"{upper_snake(enum)}_{upper_snake(label)}"


def enum_zero_name(enum: str) -> str:
    """The zero value every enum gets: ``SPECIES_UNSPECIFIED``."""
    return f"{upper_snake(enum)}_UNSPECIFIED"
