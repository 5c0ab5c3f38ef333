"""Serving adopted APIs: legacy method paths beside ``<model>.v<major>``, and bound RPCs.

A model line adopted with ``protoreg adopt --rpc /pkg.Service/Method`` names that path in its
rendered file (``// Legacy RPC:``), and the legacy ``.proto`` is rendered into ``proto_versions/``
beside it. The server answers the legacy path with the line's own ``Predict``: the adopted
``PredictRequest`` and ``PredictResponse`` are wire-compatible with the legacy messages by
construction (same numbers, types and presence; later releases only add fields), so old clients
keep calling what they call today. Reflection lists the legacy service from its own descriptors.

Other methods of a legacy service (a classic ``get_models``) answer from a Python callable bound
with ``serve --bind /pkg.Service/Method=module:function``: it is called with the served models'
metadata (a list of :class:`ModelInfo`) and the request message, and returns the response message
or a dict in its JSON form. A method neither served nor bound answers ``UNIMPLEMENTED`` saying how
to bind it; :attr:`LegacyRoutes.unbound` lists them for the start-up lines.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from protoreg.registry.errors import ProtoregError

from .binding import ServedModel
from .compile import ProtoTree
from .status import Status, abort, internal, invalid
from .unary import UnaryMethod, deadline_of


class LegacyError(ProtoregError):
    """A legacy path or a ``--bind`` that cannot be served."""


@dataclass(frozen=True)
class ModelInfo:
    """What a bound function learns about one served model line."""

    name: str
    display_name: str
    description: str
    version: str
    major: int
    minor: int
    service: str  # <model>.v<major>.<Model>Service
    predict: str  # /<model>.v<major>.<Model>Service/Predict
    legacy_rpc: str | None  # the legacy path this line also answers, if it was adopted with --rpc
    request_type: str  # full names of the messages that path takes and returns (the legacy ones when adopted)
    response_type: str


Bound = Callable[[list[ModelInfo], Message], Any]


def parse_binding(text: str) -> tuple[str, str]:
    """``/pkg.Service/Method=module:function`` -> ``(path, ref)``."""
    path, sep, ref = text.partition("=")
    if not sep or not path.startswith("/") or path.count("/") != 2 or ":" not in ref:
        raise LegacyError(f'--bind wants /package.Service/Method=module:function, not "{text}"')
    return path, ref


def load_bound(ref: str, path: str) -> Bound:
    """The function ``module:function`` names (imported from the current directory first)."""
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
        function = getattr(module, attr)
    except (ImportError, AttributeError) as error:
        raise LegacyError(f'--bind {path}={ref}: cannot load "{ref}" ({error}); name a module:function '
                          "importable from the current directory") from error
    if not callable(function):
        raise LegacyError(f'--bind {path}={ref}: "{ref}" is not callable; name a function of (models, request)')
    result: Bound = function
    return result


def model_info(model: ServedModel) -> ModelInfo:
    from protoreg.registry.versioning import parse_version

    version = parse_version(model.version)
    legacy = model.release.legacy_rpc
    request = model.codec.request_class.DESCRIPTOR.full_name
    response = model.codec.response_class.DESCRIPTOR.full_name
    if legacy is not None:
        method = _method(model.release.file.pool, legacy)
        if method is not None:
            request, response = method.input_type.full_name, method.output_type.full_name
    return ModelInfo(model.name, model.display_name, model.description, model.version, version.major,
                     version.minor, model.service_name, f"/{model.service_name}/Predict", legacy, request, response)


def _method(pool: Any, path: str) -> Any:
    service_name, method_name = path[1:].split("/", 1)
    try:
        service = pool.FindServiceByName(service_name)
    except KeyError:
        return None
    return service.methods_by_name.get(method_name)


@dataclass
class LegacyRoutes:
    """The legacy side of the server's routing tables."""

    handlers: dict[str, grpc.RpcMethodHandler] = field(default_factory=dict)
    unary: dict[str, UnaryMethod] = field(default_factory=dict)
    services: list[str] = field(default_factory=list)  # full names, for reflection
    served: dict[str, str] = field(default_factory=dict)  # legacy path -> the line's service that answers it
    bound: list[str] = field(default_factory=list)
    unbound: list[str] = field(default_factory=list)


def _grpc(method: UnaryMethod, path: str) -> grpc.RpcMethodHandler:
    async def call(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            try:
                request = method.request.FromString(data)
            except Exception as error:
                raise invalid(f"request bytes are not a valid request of {path} ({error})") from error
            return (await method.call(request, deadline_of(context))).SerializeToString()  # type: ignore[no-any-return]
        except Status as status:
            await abort(context, status)
            raise AssertionError("unreachable") from None  # abort raises

    return grpc.unary_unary_rpc_method_handler(call)


def _unbound(path: str) -> Callable[[Message, float | None], Awaitable[Message]]:
    async def call(_request: Message, _deadline: float | None) -> Message:
        raise Status("UNIMPLEMENTED", f"{path} is not bound on this server; start it with "
                                      f"--bind {path}=module:function")

    return call


def _answer(function: Bound, path: str, infos: list[ModelInfo],
            response_class: type[Message]) -> Callable[[Message, float | None], Awaitable[Message]]:
    async def call(request: Message, _deadline: float | None) -> Message:
        try:
            result = function(infos, request)
            if inspect.isawaitable(result):
                result = await result
            if isinstance(result, Message):
                return response_class.FromString(result.SerializeToString())
            return json_format.ParseDict(result, response_class())
        except Exception as error:
            raise internal("bound function", f"{path}", error) from error

    return call


def legacy_routes(
    models: Sequence[ServedModel],
    predict: Mapping[str, UnaryMethod],
    predict_handlers: Mapping[str, grpc.RpcMethodHandler],
    tree: ProtoTree,
    bindings: Mapping[str, Bound],
) -> LegacyRoutes:
    """Routes for every legacy path the served lines name and every method of their services.

    ``predict`` and ``predict_handlers`` are the lines' own ``Predict`` methods by path.
    """
    routes = LegacyRoutes()
    services: dict[str, Any] = {}
    for model in models:
        path = model.release.legacy_rpc
        if path is None:
            continue
        method = _method(tree.pool, path)
        if method is None:
            raise LegacyError(f"{model.release.path} names the legacy RPC {path}, which no file of {tree.root} "
                              "declares; re-render it with `protoreg render`")
        if path in routes.served:
            raise LegacyError(f"{path} is named by both {routes.served[path]} and {model.service_name}; an adopted "
                              "path is served by one line")
        own = f"/{model.service_name}/Predict"
        routes.served[path] = model.service_name
        routes.handlers[path] = predict_handlers[own]
        routes.unary[path] = predict[own]
        services[method.containing_service.full_name] = method.containing_service
    for path in bindings:
        method = _method(tree.pool, path)
        if method is None or method.containing_service.full_name not in services:
            known = ", ".join(sorted(services)) or "none"
            raise LegacyError(f"--bind {path}: not a method of a legacy service this server answers (legacy services: "
                              f"{known}); bind methods of a service a served model was adopted from")
    infos = [model_info(m) for m in models]  # the routes are rebuilt on every reload, so once per table
    for name, service in sorted(services.items()):
        routes.services.append(name)
        for method in service.methods:
            path = f"/{name}/{method.name}"
            if path in routes.served:
                continue
            if method.client_streaming or method.server_streaming:
                routes.unbound.append(path)
                continue  # no handler: gRPC answers UNIMPLEMENTED
            request_class = tree.message_class(method.input_type.full_name)
            if path in bindings:
                response_class = tree.message_class(method.output_type.full_name)
                unary = UnaryMethod(request_class, _answer(bindings[path], path, infos, response_class))
                routes.bound.append(path)
            else:
                unary = UnaryMethod(request_class, _unbound(path))
                routes.unbound.append(path)
            routes.unary[path] = unary
            routes.handlers[path] = _grpc(unary, path)
    return routes
