"""A reflection-based client: call a model's ``Predict`` with JSON, no ``.proto`` file needed.

The server's reflection service lists the services; the model's is the one in package
``<model>.v<major>`` (the highest major unless one is asked for). Its descriptors come over the
wire into a private pool, the JSON is parsed into the request type and the response printed as
JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from google.rpc import error_details_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status

from protoreg.registry.errors import ProtoregError, UsageError

from .auth import with_token

# protobuf's binary decoder (upb) takes messages nested 100 deep; its JSON parser counts the
# top-level message too, so 101 lets through exactly what the server accepts.
JSON_DEPTH_LIMIT = 101


class PredictCallError(ProtoregError):
    """The server answered with an error status."""

    def __init__(self, code: grpc.StatusCode, details: str, violations: list[tuple[str, str]]) -> None:
        self.code = code
        self.details = details
        self.violations = violations
        lines = [f"{code.name}: {details}"]
        # the server's message usually lists the violations already; add only what it lacks
        lines += [f"  {name}: {text}" for name, text in violations if f"{name}: {text}" not in details]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class ClientTLS:
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: Path | None) -> bytes | None:
            return path.read_bytes() if path is not None else None

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca), private_key=read(self.key), certificate_chain=read(self.cert)
        )


@dataclass
class PredictTarget:
    address: str
    tls: ClientTLS | None = None
    options: list[tuple[str, str]] = field(default_factory=list)
    token: str | None = None  # sent as `authorization: Bearer <token>` on every call

    def channel(self) -> grpc.Channel:
        if self.tls is None:
            channel = grpc.insecure_channel(self.address, options=self.options)
        else:
            channel = grpc.secure_channel(self.address, self.tls.credentials(), options=self.options)
        return with_token(channel, self.token)


def find_service(services: list[str], model: str, major: int | None) -> str:
    """The full name of the model's service among ``services`` (highest major by default)."""
    pattern = re.compile(rf"^{re.escape(model)}\.v(\d+)\.[A-Za-z0-9_]+Service$")
    lines = sorted(
        ((int(m[1]), name) for name in services if (m := pattern.match(name))), key=lambda item: item[0]
    )
    if not lines:
        raise UsageError(
            f'the server serves no model "{model}" (services: {", ".join(sorted(services)) or "none"})'
        )
    if major is None:
        return lines[-1][1]
    for line, name in lines:
        if line == major:
            return name
    served = ", ".join(str(line) for line, _ in lines)
    raise UsageError(f'the server serves "{model}" major lines {served}, not {major}; pick one with --major')


def predict_json(
    target: PredictTarget, model: str, payload: str, major: int | None = None, timeout: float | None = 30.0
) -> str:
    """Call ``Predict`` on ``model`` with a JSON request; returns the response as JSON."""
    with target.channel() as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        try:
            services = list(database.get_services())
        except grpc.RpcError as error:
            raise PredictCallError(error.code(), f"reflection failed at {target.address}: {error.details()}",
                                   []) from error
        name = find_service(services, model, major)
        pool = descriptor_pool.DescriptorPool(database)
        method = pool.FindServiceByName(name).methods_by_name["Predict"]
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        try:
            request = json_format.Parse(payload, request_class(), max_recursion_depth=JSON_DEPTH_LIMIT)
        except json_format.ParseError as error:
            raise UsageError(f"--json is not a valid {method.input_type.full_name}: {error}") from error
        call = channel.unary_unary(
            f"/{name}/Predict",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        try:
            response = call(request, timeout=timeout)
        except grpc.RpcError as error:
            raise PredictCallError(error.code(), error.details() or "", _violations(error)) from error
    return json_format.MessageToJson(response, preserving_proto_field_name=True, indent=2)


def _violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    found: list[tuple[str, str]] = []
    if status is None:
        return found
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found += [(v.field, v.description) for v in bad.field_violations]
    return found
