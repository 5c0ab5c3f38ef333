"""The gRPC server: model services, health, reflection, the registry service, and shutdown.

Every handler is registered with raw bytes in and out, so the server decides the status of every
failure itself: bytes that do not parse and inputs pydantic refuses are ``INVALID_ARGUMENT`` (the
latter with ``google.rpc.BadRequest`` field violations), a model that raises is ``INTERNAL`` with a
request id that also appears, with the traceback, in the log. Unknown services and methods are
``UNIMPLEMENTED`` and messages over ``max_message_bytes`` are ``RESOURCE_EXHAUSTED``, both from
gRPC itself.

The registry service (``protoreg.registry.v1``) answers from ``proto_versions/`` only.

Two interceptors see every call first: the bearer-token check of ``service/auth.py`` (when a token
is configured) and ``service/decoding.py``, which makes bytes the standard services cannot parse
``INVALID_ARGUMENT`` rather than gRPC's ``INTERNAL``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import grpc
from google.protobuf import descriptor_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from protoreg.registry.errors import ProtoregError
from protoreg.registry.loader import load_model
from protoreg.registry.naming import MODEL_NAME, REGISTRY_PACKAGE, STREAM_REQUEST_MESSAGE, STREAM_RESPONSE_MESSAGE

from .auth import BearerTokenInterceptor
from .binding import ServedModel, bind_model, describe_field
from .compile import ProtoTree, load_protos
from .convert import RequestError, Violation
from .decoding import DecodeGuardInterceptor
from .health import ListingHealthServicer
from .limits import bounded_status, cut

log = logging.getLogger("protoreg.service")

DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
REGISTRY_SERVICE = f"{REGISTRY_PACKAGE}.RegistryService"


class ServeError(ProtoregError):
    """The server could not start (address in use, bad certificates, ...)."""


@dataclass(frozen=True)
class ServeOptions:
    address: str = DEFAULT_ADDRESS
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    workers: int = 16
    auth_token: str | None = None  # when set, every call but health needs it (service/auth.py)


# -- status helpers ----------------------------------------------------------------------------


def _abort_invalid(context: grpc.ServicerContext, message: str, violations: Sequence[Violation]) -> NoReturn:
    message, violations = bounded_status(message, violations)
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=message)
    if violations:
        detail = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in violations
            ]
        )
        status.details.add().Pack(detail)
    context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("unreachable")  # abort_with_status raises


def _check_deadline(context: grpc.ServicerContext) -> None:
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the model ran")


# -- model services ---------------------------------------------------------------------------


class ModelServicer:
    """``Predict`` and ``PredictStream`` of one served model."""

    def __init__(self, model: ServedModel, tree: ProtoTree) -> None:
        self.model = model
        package = model.release.package
        self.stream_request = tree.message_class(f"{package}.{STREAM_REQUEST_MESSAGE}")
        self.stream_response = tree.message_class(f"{package}.{STREAM_RESPONSE_MESSAGE}")

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            self.model.service_name,
            {
                "Predict": grpc.unary_unary_rpc_method_handler(self.predict),
                "PredictStream": grpc.stream_stream_rpc_method_handler(self.predict_stream),
            },
        )

    def _internal(self, context: grpc.ServicerContext, what: str) -> NoReturn:
        """INTERNAL with a fresh request id; call inside ``except`` so the traceback is logged."""
        model = self.model
        request_id = uuid.uuid4().hex
        log.exception("request %s: %s of model %s %s failed", request_id, what, model.name, model.version)
        context.set_trailing_metadata((("request-id", request_id),))
        context.abort(
            grpc.StatusCode.INTERNAL,
            f"model {model.name} {model.version} failed on this request (request id {request_id}); "
            "the server log has the details",
        )
        raise AssertionError("unreachable")  # abort raises

    def _input(self, parse: Callable[[], Any], context: grpc.ServicerContext) -> Any:
        """Run ``parse``; a RequestError is re-raised for the caller to report, a bug is INTERNAL."""
        try:
            return parse()
        except RequestError:
            raise
        except Exception:
            self._internal(context, "request conversion")

    def _run(self, data: Any, context: grpc.ServicerContext) -> Message:
        _check_deadline(context)
        model = self.model
        try:
            return model.codec.to_response(model.instance.predict(data))
        except Exception:
            self._internal(context, "predict")

    def predict(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        codec = self.model.codec
        try:
            data = self._input(lambda: codec.to_input(codec.parse(request)), context)
        except RequestError as error:
            _abort_invalid(context, str(error), error.violations)
        return self._run(data, context).SerializeToString()

    def predict_stream(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        codec = self.model.codec
        for index, raw in enumerate(requests):
            try:
                try:
                    item = self.stream_request.FromString(raw)
                except Exception as error:
                    raise RequestError(f"bytes are not a valid {STREAM_REQUEST_MESSAGE} ({error})") from error
                data = self._input(partial(codec.to_input, item.request), context)  # type: ignore[attr-defined]
            except RequestError as error:
                violations = [
                    Violation(f"[{index}].request.{v.field}", v.description) for v in error.violations
                ]
                _abort_invalid(context, f"stream item {index}: {error}", violations)
            response = self.stream_response()
            response.response.CopyFrom(self._run(data, context))  # type: ignore[attr-defined]
            yield response.SerializeToString()


# -- registry service -------------------------------------------------------------------------


class RegistryServicer:
    """``protoreg.registry.v1.RegistryService``, answered from the served releases only."""

    def __init__(self, models: Sequence[ServedModel], tree: ProtoTree) -> None:
        self.tree = tree
        self.models: dict[str, list[ServedModel]] = {}
        for model in sorted(models, key=lambda m: (m.name, m.release.major)):
            self.models.setdefault(model.name, []).append(model)
        self.cls = {
            name: tree.message_class(f"{REGISTRY_PACKAGE}.{name}")
            for name in (
                "ListModelsRequest", "ListModelsResponse", "ListReleasesRequest", "ListReleasesResponse",
                "GetFieldMapRequest", "GetFieldMapResponse", "GetProtoRequest", "GetProtoResponse",
                "Release", "ModelInfo",
            )
        }
        # Releases never change while serving, so each field map is built once, here.
        self.field_maps = {
            (m.name, m.release.major): self._field_map(m) for lines in self.models.values() for m in lines
        }

    def handler(self) -> grpc.GenericRpcHandler:
        methods = {
            "ListModels": ("ListModelsRequest", self.list_models),
            "ListReleases": ("ListReleasesRequest", self.list_releases),
            "GetFieldMap": ("GetFieldMapRequest", self.get_field_map),
            "GetProto": ("GetProtoRequest", self.get_proto),
        }
        return grpc.method_handlers_generic_handler(
            REGISTRY_SERVICE,
            {name: grpc.unary_unary_rpc_method_handler(self._wrap(request, fn))
             for name, (request, fn) in methods.items()},
        )

    def _wrap(self, request_name: str, fn: Callable[[Any, grpc.ServicerContext], Message]
              ) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        request_class = self.cls[request_name]

        def call(data: bytes, context: grpc.ServicerContext) -> bytes:
            try:
                request = request_class.FromString(data)
            except Exception as error:
                _abort_invalid(context, f"request bytes are not a valid {request_name} ({error})", ())
            return fn(request, context).SerializeToString()

        return call

    def _release(self, model: ServedModel) -> Message:
        release = model.release
        return self.cls["Release"](
            major=release.major,
            version=release.version,
            package=release.package,
            service=model.service_name,
            proto_path=release.path,
        )

    def _lines(self, name: str, context: grpc.ServicerContext) -> list[ServedModel]:
        if not MODEL_NAME.fullmatch(name):  # fullmatch: the pattern's "$" would let a final "\n" in
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f'"{cut(name, 64)}" is not a model name; model names are lower_snake_case, '
                          'like "iris_model"')
        if name not in self.models:
            served = ", ".join(sorted(self.models)) or "none"
            context.abort(grpc.StatusCode.NOT_FOUND, f'model "{cut(name, 64)}" is not served here (served: {served})')
        return self.models[name]

    def _line(self, name: str, major: int, context: grpc.ServicerContext) -> ServedModel:
        lines = self._lines(name, context)
        if major == 0:
            return lines[-1]
        for model in lines:
            if model.release.major == major:
                return model
        served = ", ".join(str(m.release.major) for m in lines)
        context.abort(grpc.StatusCode.NOT_FOUND,
                      f'model "{name}" has no served major line {major} (served: {served})')
        raise AssertionError("unreachable")

    def list_models(self, request: Any, context: grpc.ServicerContext) -> Message:
        response = self.cls["ListModelsResponse"]()
        for name, lines in sorted(self.models.items()):
            newest = lines[-1]
            response.models.add(  # type: ignore[attr-defined]
                name=name,
                display_name=newest.display_name,
                description=newest.description,
                releases=[self._release(m) for m in lines],
            )
        return response

    def list_releases(self, request: Any, context: grpc.ServicerContext) -> Message:
        lines = self._lines(request.model, context)
        return self.cls["ListReleasesResponse"](releases=[self._release(m) for m in lines])

    def get_field_map(self, request: Any, context: grpc.ServicerContext) -> Message:
        model = self._line(request.model, request.major, context)
        return self.field_maps[(model.name, model.release.major)]

    def _field_map(self, model: ServedModel) -> Message:
        response = self.cls["GetFieldMapResponse"](release=self._release(model))
        file = model.release.file
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        package = model.release.package
        for msg_proto in proto.message_type:
            msg = file.message_types_by_name[msg_proto.name]
            entry = response.messages.add(name=msg.name)  # type: ignore[attr-defined]
            for fd in msg.fields:
                described = describe_field(fd, package)
                if fd.is_repeated:
                    label = "map" if described.startswith("map<") else "repeated"
                else:
                    label = "optional" if fd.has_presence else "singular"
                entry.fields.add(name=fd.name, number=fd.number, type=described.removeprefix("repeated "), label=label)
            for r in msg_proto.reserved_range:  # end is exclusive in descriptors
                entry.reserved_ranges.add(start=r.start, end=r.end - 1)
            entry.reserved_names.extend(msg_proto.reserved_name)
        for enum_proto in proto.enum_type:
            entry = response.enums.add(name=enum_proto.name)  # type: ignore[attr-defined]
            for value in enum_proto.value:
                entry.values.add(name=value.name, number=value.number)
            for r in enum_proto.reserved_range:  # end is inclusive for enums
                entry.reserved_ranges.add(start=r.start, end=r.end)
            entry.reserved_names.extend(enum_proto.reserved_name)
        return response

    def get_proto(self, request: Any, context: grpc.ServicerContext) -> Message:
        model = self._line(request.model, request.major, context)
        return self.cls["GetProtoResponse"](release=self._release(model), content=model.release.content)


# -- reflection -------------------------------------------------------------------------------


def _reflection_v1_handler(servicer: reflection.ReflectionServicer) -> grpc.GenericRpcHandler:
    """``grpc.reflection.v1`` on top of the v1alpha servicer: the two are identical on the wire."""
    return grpc.method_handlers_generic_handler(
        REFLECTION_V1,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )


def _add_reflection_v1_file(tree: ProtoTree) -> None:
    """The v1 reflection file, made from v1alpha by renaming, so reflection can describe itself."""
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    old, new = "grpc.reflection.v1alpha", "grpc.reflection.v1"
    proto.name = "grpc/reflection/v1/reflection.proto"
    proto.package = new
    for message in proto.message_type:
        for fd in message.field:
            if fd.HasField("type_name"):
                fd.type_name = fd.type_name.replace(f".{old}.", f".{new}.")
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(f".{old}.", f".{new}.")
            method.output_type = method.output_type.replace(f".{old}.", f".{new}.")
    try:
        tree.pool.FindFileByName(proto.name)
    except KeyError:
        tree.pool.AddSerializedFile(proto.SerializeToString())


# -- the server -------------------------------------------------------------------------------


class ModelServer:
    """A configured gRPC server for some models; :meth:`start` binds, :meth:`stop` drains."""

    def __init__(self, models: Sequence[ServedModel], tree: ProtoTree, options: ServeOptions) -> None:
        self.models = list(models)
        self.tree = tree
        self.options = options
        self.port = 0
        # Blocking Watch streams: the non-blocking mode sends under the servicer's lock and can
        # deadlock against a watch closing at the same moment (seen on shutdown), so each Watch
        # holds a worker thread instead.
        self.health = ListingHealthServicer(
            experimental_non_blocking=False, max_watchers=max(1, options.workers // 4)
        )
        limit = options.max_message_bytes
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="protoreg"),
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 0),  # a second server on the same port must fail, not share
            ],
            interceptors=[
                *([BearerTokenInterceptor(options.auth_token)] if options.auth_token else []),
                DecodeGuardInterceptor(),
            ],
        )
        handlers = [ModelServicer(m, tree).handler() for m in self.models]
        self.service_names = [m.service_name for m in self.models]
        if tree.registry_file is not None:
            handlers.append(RegistryServicer(self.models, tree).handler())
            self.service_names.append(REGISTRY_SERVICE)
        self.server.add_generic_rpc_handlers(tuple(handlers))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        _add_reflection_v1_file(tree)
        reflected = [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME, REFLECTION_V1]
        reflection_servicer = reflection.ReflectionServicer(reflected, pool=tree.pool)
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(reflection_servicer, self.server)
        self.server.add_generic_rpc_handlers((_reflection_v1_handler(reflection_servicer),))

    def _credentials(self) -> grpc.ServerCredentials | None:
        opts = self.options
        if opts.tls_cert is None and opts.tls_key is None:
            if opts.tls_client_ca is not None:
                raise ServeError("--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS first)")
            return None
        if opts.tls_cert is None or opts.tls_key is None:
            raise ServeError("TLS needs both --tls-cert and --tls-key")
        try:
            pair = (opts.tls_key.read_bytes(), opts.tls_cert.read_bytes())
            client_ca = opts.tls_client_ca.read_bytes() if opts.tls_client_ca else None
        except OSError as error:
            raise ServeError(f"cannot read a TLS file: {error}") from error
        return grpc.ssl_server_credentials(
            [pair], root_certificates=client_ca, require_client_auth=client_ca is not None
        )

    def start(self) -> int:
        """Bind the address, start serving and report SERVING; returns the bound port."""
        address = self.options.address
        credentials = self._credentials()
        try:
            if credentials is None:
                port = self.server.add_insecure_port(address)
            else:
                port = self.server.add_secure_port(address, credentials)
        except RuntimeError as error:
            port = 0
            detail = f" ({error})"
        else:
            detail = ""
        if not port:
            raise ServeError(
                f"cannot listen on {address}{detail}; is another server using it? "
                "choose another with --address HOST:PORT"
            )
        self.port = port
        self.server.start()
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        for name in self.service_names:
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return port

    def stop(self, grace: float | None = 10.0) -> None:
        """Report NOT_SERVING, stop accepting calls, let in-flight calls finish within ``grace``."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()

    def wait(self, timeout: float | None = None) -> bool:
        return self.server.wait_for_termination(timeout)


def create_server(
    models: Sequence[Any],
    protos: Path | ProtoTree,
    options: ServeOptions | None = None,
    refs: Sequence[str] | None = None,
) -> ModelServer:
    """Compile ``protos`` (unless already compiled), bind every model, and build the server."""
    tree = protos if isinstance(protos, ProtoTree) else load_protos(protos)
    refs = list(refs) if refs is not None else [None] * len(models)  # type: ignore[list-item]
    bound = [bind_model(model, tree, ref) for model, ref in zip(models, refs, strict=True)]
    seen: dict[str, str] = {}
    for model in bound:
        if model.service_name in seen:
            raise ServeError(
                f'{model.name} {model.version} and {seen[model.service_name]} both want to serve '
                f"{model.service_name}; serve one release per major line"
            )
        seen[model.service_name] = f"{model.name} {model.version}"
    return ModelServer(bound, tree, options or ServeOptions())


def serve_refs(refs: Sequence[str], protos: Path, options: ServeOptions) -> ModelServer:
    """Load MODEL_REFs and build their server (what ``protoreg serve`` runs)."""
    return create_server([load_model(ref) for ref in refs], protos, options, refs)
