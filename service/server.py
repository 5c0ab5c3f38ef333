"""The gRPC server: model services, health, reflection, the registry service, and shutdown.

The server is ``grpc.aio``: one event loop (in a thread of its own, so that the caller, the CLI or
a test, keeps its thread) answers every call, and each served model runs in model threads of its
own behind a batching queue (``service/batching.py``). A slow or stuck model holds only its own
threads; an idle stream holds no thread at all.

Every method is registered with raw bytes in and out, in one table (:class:`Router`), so the
server decides the status of every failure itself: bytes that do not parse (for any method,
health and reflection included) and inputs pydantic refuses are ``INVALID_ARGUMENT`` (the latter
with ``google.rpc.BadRequest`` field violations); a model that raises is ``INTERNAL`` with a
request id that also appears, with the traceback, in the log; unknown services and methods are
``UNIMPLEMENTED`` and messages over ``max_message_bytes`` are ``RESOURCE_EXHAUSTED``, both from
gRPC itself. With a bearer token configured the router answers ``UNAUTHENTICATED`` before any
handler runs, for every method but health (``service/auth.py``, ``service/health.py``).

The registry service (``protoreg.registry.v1``) answers from ``proto_versions/`` only.

With ``http_address`` the same loop also runs the JSON side (``service/http.py``): the unary
methods of :attr:`ModelServer.unary` (each model's ``Predict`` and the registry service, the same
:class:`~protoreg.service.unary.UnaryMethod` objects the gRPC handlers call), health endpoints and
the registry browser; it starts after gRPC in ``_start`` and stops beside it in ``_stop``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import descriptor_pb2, message_factory
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha._async import ReflectionServicer

from protoreg.registry.errors import ProtoregError
from protoreg.registry.naming import (
    PREDICT_METHOD,
    PREDICT_STREAM_METHOD,
    STREAM_REQUEST_MESSAGE,
    STREAM_RESPONSE_MESSAGE,
)
from protoreg.registry.schema import extract_schema

from .address import parse_address
from .auth import UNAUTHENTICATED, TokenSource
from .batching import BatchPolicy, CallError, ModelLine
from .binding import ServedModel, bind_model
from .capacity import DEFAULT_ADDRESS, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_STREAMS, DEFAULT_WORKERS, watcher_limit
from .compile import ProtoTree, load_protos
from .convert import RequestError, Violation
from .deprecation import DeprecatedFields
from .health import NOT_SERVING, SERVING, HealthServicer
from .health import SERVICE as HEALTH_SERVICE
from .legacy import LegacyRoutes, legacy_routes, load_bound
from .limits import Slots
from .models import ModelSource, choose
from .registry_service import REGISTRY_SERVICE, RegistryServicer
from .status import Status, abort, internal, invalid, undecodable
from .telemetry import Telemetry
from .tls import server_credentials
from .unary import UnaryMethod, deadline_of

if TYPE_CHECKING:
    from .http import HttpEndpoint

log = logging.getLogger("protoreg.service")

REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
REFLECTION_V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"
STREAM_WINDOW = 64  # PredictStream items read ahead of the answers (they batch with each other)
RETIRE_AFTER = 5.0  # seconds a line replaced by a reload keeps its threads, for calls routed before


class ServeError(ProtoregError):
    """The server could not start (address in use, ...)."""


@dataclass(frozen=True)
class ServeOptions:
    address: str = DEFAULT_ADDRESS
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    workers: int = DEFAULT_WORKERS  # model threads of a model without predict_batch
    max_streams: int = DEFAULT_MAX_STREAMS
    auth_token: str | TokenSource | None = None  # when set, every call but health needs it (auth.py)
    batch: BatchPolicy = field(default_factory=BatchPolicy)
    reuse_port: bool = False  # --processes: every worker process binds the same port
    telemetry: Telemetry | None = None  # request ids, access lines, metrics, traces (default: access lines)
    reload_interval: float = 0.0  # seconds between reloads (0: only on request, e.g. SIGHUP)
    drain: float = 10.0  # seconds a line gone from proto_versions/ stays, NOT_SERVING, before UNIMPLEMENTED
    http_address: str | None = None  # JSON over HTTP (Connect), health and the browser there (service/http.py)
    site: Path | None = None  # a `protoreg site --out` directory whose pages the HTTP side serves at /
    bindings: tuple[tuple[str, str], ...] = ()  # --bind: (legacy method path, module:function) (service/legacy.py)


# -- model services ---------------------------------------------------------------------------


class ModelServicer:
    """``Predict`` and ``PredictStream`` of one served model, through its :class:`ModelLine`."""

    def __init__(self, model: ServedModel, tree: ProtoTree, line: ModelLine, streams: Slots,
                 telemetry: Telemetry | None = None) -> None:
        self.model = model
        self.line = line
        self.streams = streams
        telemetry = telemetry or Telemetry(access_log=False)
        self.span = telemetry.span
        self.traced = telemetry.tracing is not None
        self.subject = f"model {model.name} {model.version}"
        # the classes of the model's own release file, which its codec was built from (a reload
        # may have compiled a newer tree meanwhile)
        messages = model.release.file.message_types_by_name
        self.stream_request = message_factory.GetMessageClass(messages[STREAM_REQUEST_MESSAGE])
        self.stream_response = message_factory.GetMessageClass(messages[STREAM_RESPONSE_MESSAGE])
        self.deprecated = DeprecatedFields(model.codec.request_class.DESCRIPTOR, self.subject)

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        service = self.model.service_name
        return {
            f"/{service}/{PREDICT_METHOD}": grpc.unary_unary_rpc_method_handler(self.predict),
            f"/{service}/{PREDICT_STREAM_METHOD}": grpc.stream_stream_rpc_method_handler(self.predict_stream),
        }

    def unary(self) -> dict[str, UnaryMethod]:
        """``Predict`` for the other transports (the JSON side), on the same path as gRPC's."""
        model = self.model
        return {f"/{model.service_name}/{PREDICT_METHOD}": UnaryMethod(
            model.codec.request_class, self.predict_message, (model.name, model.version),
            self.deprecated.note if self.deprecated.active else None)}

    def _input(self, request: Any) -> Any:
        """The model's input from a request message; RequestError for the client, INTERNAL for a bug."""
        try:
            return self.model.codec.to_input(request)
        except RequestError:
            raise
        except Exception as error:
            raise internal("request conversion", self.subject) from error

    def _failure(self, error: CallError) -> Status:
        if error.code == "INTERNAL":
            return internal("predict", self.subject, error.error)
        return Status(error.code, str(error))

    def _response(self, output: Any) -> Any:
        try:
            return self.model.codec.to_response(output)
        except Exception as error:
            raise internal("response conversion", self.subject, error) from error

    async def predict(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            try:
                if self.traced:
                    with self.span("decode"):
                        message = self.model.codec.parse(request)
                else:
                    message = self.model.codec.parse(request)
            except RequestError as error:
                raise invalid(str(error), error.violations) from error
            if self.deprecated.active:
                self.deprecated.note(message, context.peer())
            return (await self.predict_message(message, deadline_of(context))).SerializeToString()  # type: ignore[no-any-return]
        except Status as status:
            await abort(context, status)
            raise AssertionError("unreachable") from None  # abort raises

    async def predict_message(self, message: Any, deadline: float | None) -> Any:
        """validate -> the model -> the response message, whatever the transport; raises Status."""
        if self.traced:
            return await self._traced(message, deadline)
        try:
            data = self._input(message)
        except RequestError as error:
            raise invalid(str(error), error.violations) from error
        try:
            output = await self.line.call(data, deadline)
        except CallError as error:
            raise self._failure(error) from error
        return self._response(output)

    async def _traced(self, message: Any, deadline: float | None) -> Any:
        """:meth:`predict_message` with a child span for each step."""
        span = self.span
        try:
            with span("validate"):
                data = self._input(message)
        except RequestError as error:
            raise invalid(str(error), error.violations) from error
        try:
            with span("predict"):
                output = await self.line.call(data, deadline)
        except CallError as error:
            raise self._failure(error) from error
        with span("encode"):
            return self._response(output)

    async def predict_stream(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
                             ) -> AsyncIterator[bytes]:
        """Items are read ahead and queued as they come (so they batch with each other and with
        other calls); answers are written in the order of the items."""
        if not self.streams.acquire():
            await abort(context, Status("RESOURCE_EXHAUSTED", self.streams.refusal))
        pending: asyncio.Queue[tuple[int, Any]] = asyncio.Queue(STREAM_WINDOW)
        reader = asyncio.ensure_future(self._read_stream(requests, context, pending))
        try:
            while True:
                index, item = await pending.get()
                if item is None:
                    return
                if isinstance(item, Status):
                    raise item
                try:
                    output = await item
                except CallError as error:
                    raise self._failure(error) from error
                response = self.stream_response()
                response.response.CopyFrom(self._response(output))  # type: ignore[attr-defined]
                yield response.SerializeToString()
        except Status as status:
            await abort(context, status)
        finally:
            reader.cancel()
            while not pending.empty():
                _, item = pending.get_nowait()
                if isinstance(item, asyncio.Future):
                    self.line.withdraw(item)
            self.streams.release()

    async def _read_stream(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext,
                           pending: asyncio.Queue[tuple[int, Any]]) -> None:
        deadline = deadline_of(context)
        index = 0
        try:
            async for raw in requests:
                try:
                    try:
                        item = self.stream_request.FromString(raw)
                    except Exception as error:
                        raise RequestError(f"bytes are not a valid {STREAM_REQUEST_MESSAGE} ({error})") from error
                    if self.deprecated.active:
                        self.deprecated.note(item.request, context.peer())  # type: ignore[attr-defined]
                    data = self._input(item.request)  # type: ignore[attr-defined]
                except RequestError as error:
                    violations = [Violation(f"[{index}].request.{v.field}", v.description) for v in error.violations]
                    await pending.put((index, invalid(f"stream item {index}: {error}", violations)))
                    return
                except Status as status:
                    await pending.put((index, status))
                    return
                try:
                    future = self.line.submit(data, deadline)
                except CallError as error:
                    await pending.put((index, self._failure(error)))
                    return
                await pending.put((index, future))
                index += 1
        finally:
            if not pending.full():
                pending.put_nowait((index, None))
            else:
                await pending.put((index, None))


# -- reflection -------------------------------------------------------------------------------


def _reflection_handler(servicer: ReflectionServicer, streams: Slots, method: str) -> grpc.RpcMethodHandler:
    """``ServerReflectionInfo`` on raw bytes: bytes that do not parse are INVALID_ARGUMENT."""

    async def info(raws: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        if not streams.acquire():
            await abort(context, Status("RESOURCE_EXHAUSTED", streams.refusal))

        async def parsed() -> AsyncIterator[Any]:
            async for raw in raws:
                try:
                    request = reflection_pb2.ServerReflectionRequest.FromString(raw)
                except Exception as error:
                    await abort(context, undecodable(method, error))
                yield request

        try:
            async for response in servicer.ServerReflectionInfo(parsed(), context):
                yield response.SerializeToString()
        finally:
            streams.release()

    return grpc.stream_stream_rpc_method_handler(info)


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


# -- routing ----------------------------------------------------------------------------------


async def _unauthenticated(_request: Any, context: grpc.aio.ServicerContext) -> None:
    await abort(context, Status("UNAUTHENTICATED", UNAUTHENTICATED))


def _denial(handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that answers UNAUTHENTICATED without reading."""
    if handler is None or handler.request_streaming:
        if handler is not None and not handler.response_streaming:
            return grpc.stream_unary_rpc_method_handler(_unauthenticated)
        return grpc.stream_stream_rpc_method_handler(_unauthenticated)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(_unauthenticated)
    return grpc.unary_unary_rpc_method_handler(_unauthenticated)


class Router(grpc.GenericRpcHandler):
    """Every method of the server in one table, with the bearer-token check in front of it.

    Health is let through without the token (its servicer answers only the overall status then);
    every other method, unknown ones included, is UNAUTHENTICATED without it, so nothing can be
    probed. A reload swaps the whole table at once (:meth:`ModelServer.reload`); calls in flight
    finish on the handlers they started with.
    """

    def __init__(self, handlers: dict[str, grpc.RpcMethodHandler], denials: dict[str, grpc.RpcMethodHandler],
                 tokens: TokenSource | None) -> None:
        self.handlers = handlers
        self.denials = denials
        self.tokens = tokens

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        tokens = self.tokens
        if tokens is None or method.startswith(f"/{HEALTH_SERVICE}/"):
            return self.handlers.get(method)
        if tokens.authorized(handler_call_details.invocation_metadata):
            return self.handlers.get(method)
        return self.denials.get(method) or _denial(None)


# -- the server -------------------------------------------------------------------------------


class ReloadError(ProtoregError):
    """A reload that cannot be done; the server keeps serving what it served."""


@dataclass
class _Prepared:
    """What a reload will serve, worked out off the loop: the tree and one model per line."""

    tree: ProtoTree
    models: dict[str, ServedModel]  # service name -> model (reused objects for unchanged lines)
    gone: list[str]


class ModelServer:
    """A configured gRPC server for some models; :meth:`start` binds, :meth:`stop` drains,
    :meth:`reload` serves what ``proto_versions/`` and the installed models say now.

    The server's event loop runs in a thread of its own; every public method is called from any
    other thread.
    """

    def __init__(self, models: Sequence[ServedModel], tree: ProtoTree, options: ServeOptions,
                 source: ModelSource | None = None) -> None:
        self.tree = tree
        self.options = options
        self.source = source
        self.port = 0
        tokens = options.auth_token
        self.tokens = TokenSource.fixed(tokens) if isinstance(tokens, str) else tokens
        # access lines are the command's business (it writes them to its stderr): none by default
        self.telemetry = options.telemetry if options.telemetry is not None else Telemetry(access_log=False)
        self.served: dict[str, ServedModel] = {m.service_name: m for m in models}
        self.draining: dict[str, ServedModel] = {}  # gone from proto_versions/, NOT_SERVING until removed
        self.lines: dict[str, ModelLine] = {}
        self.health: HealthServicer | None = None
        self.router: Router | None = None
        self.unary: dict[str, UnaryMethod] = {}  # the unary methods served now, for the JSON side
        self.bound = {path: load_bound(ref, path) for path, ref in options.bindings}  # --bind
        self.legacy = LegacyRoutes()  # adopted APIs' paths served now (service/legacy.py)
        self.http: HttpEndpoint | None = None  # --http-address (service/http.py)
        if options.http_address is not None:
            from .http import HttpEndpoint

            self.http = HttpEndpoint(self)
        self._streams: Slots | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="protoreg-server", daemon=True)
        self._server: grpc.aio.Server | None = None
        self._reloading: asyncio.Lock | None = None
        self._sampler: asyncio.TimerHandle | None = None
        self._flusher: asyncio.TimerHandle | None = None
        self._reload_timer: asyncio.TimerHandle | None = None
        _add_reflection_v1_file(tree)

    @property
    def models(self) -> list[ServedModel]:
        return list(self.served.values())

    @property
    def open_streams(self) -> int:
        """Streams open now (PredictStream, reflection and health Watch count against --max-streams)."""
        return self._streams.open if self._streams is not None else 0

    @property
    def service_names(self) -> list[str]:
        names = list(self.served)
        if self.tree.registry_file is not None:
            names.append(REGISTRY_SERVICE)
        return names

    # -- running on the loop ---------------------------------------------------------------

    def _run(self, coroutine: Awaitable[Any], timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)  # type: ignore[arg-type]

    def _line(self, model: ServedModel) -> ModelLine:
        name = model.service_name
        batch_aware = callable(getattr(model.instance, "predict_batch", None))
        metrics = self.telemetry.metrics
        on_batch = None
        if metrics is not None:
            labels = (model.name, str(model.major))
            on_batch = functools.partial(_observe_batch, metrics.predict_seconds.labels(*labels),
                                         metrics.batch_size.labels(*labels))
        return ModelLine(
            f"{model.name} {model.version}", model.instance, self.options.batch, self._loop,
            threads=1 if batch_aware else self.options.workers,
            on_stall=functools.partial(self._on_stall, name), on_batch=on_batch,
        )

    def _tables(self) -> tuple[dict[str, grpc.RpcMethodHandler], dict[str, grpc.RpcMethodHandler]]:
        """Every handler for what is served now (wrapped by the telemetry), and their denials; the
        same unary methods for the JSON side go to :attr:`unary` (one assignment, on the loop)."""
        assert self.health is not None and self._streams is not None
        telemetry = self.telemetry
        handlers: dict[str, grpc.RpcMethodHandler] = {}
        unary: dict[str, UnaryMethod] = {}
        every = {**self.served, **self.draining}
        own: dict[str, grpc.RpcMethodHandler] = {}
        for name, model in every.items():
            servicer = ModelServicer(model, self.tree, self.lines[name], self._streams, telemetry)
            for path, handler in servicer.handlers().items():
                own[path] = handler
                handlers[path] = telemetry.wrap(path, handler, (model.name, model.version))
            unary.update(servicer.unary())
        legacy = legacy_routes(list(every.values()), unary, own, self.tree, self.bound)
        for path, handler in legacy.handlers.items():
            line = every.get(legacy.served.get(path, ""))
            handlers[path] = telemetry.wrap(path, handler, (line.name, line.version) if line else ("", ""))
        unary.update(legacy.unary)
        self.legacy = legacy
        service_names = list(every)
        if self.tree.registry_file is not None:
            registry = RegistryServicer(list(every.values()), self.tree)
            for path, handler in registry.handlers().items():
                handlers[path] = telemetry.wrap(path, handler)
            unary.update(registry.unary())
            service_names.append(REGISTRY_SERVICE)
        self.unary = unary
        for path, handler in self.health.handlers().items():
            handlers[path] = telemetry.wrap(path, handler)
        reflected = [*service_names, *legacy.services, HEALTH_SERVICE, REFLECTION_V1ALPHA, REFLECTION_V1]
        reflection = ReflectionServicer(reflected, pool=self.tree.pool)
        for name in (REFLECTION_V1ALPHA, REFLECTION_V1):
            path = f"/{name}/ServerReflectionInfo"
            handlers[path] = telemetry.wrap(path, _reflection_handler(reflection, self._streams, path))
        denials = {path: telemetry.wrap(path, _denial(handler)) for path, handler in handlers.items()}
        return handlers, denials

    def _build(self) -> grpc.aio.Server:
        """The aio server with every handler (on the loop: grpc.aio binds to the running loop)."""
        options = self.options
        self._streams = Slots(options.max_streams, "open streams (PredictStream, reflection and health Watch)",
                              "--max-streams")
        watchers = Slots(watcher_limit(options.max_streams), "open health Watch streams", "--max-streams / 8")
        self.health = HealthServicer(
            watchers, authorized=None if self.tokens is None else self.tokens.authorized_context)
        self.lines = {name: self._line(model) for name, model in self.served.items()}
        self._report_releases(self.served.values(), 1)
        self.router = Router(*self._tables(), self.tokens)
        self._reloading = asyncio.Lock()
        limit = options.max_message_bytes
        return grpc.aio.server(
            handlers=[self.router],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                # a second server on the same port must fail, unless --processes asked to share it
                ("grpc.so_reuseport", 1 if options.reuse_port else 0),
            ],
        )

    def _report_releases(self, models: Any, value: int) -> None:
        metrics = self.telemetry.metrics
        if metrics is not None:
            for model in models:
                metrics.release.labels(model.name, str(model.major), model.version).set(value)

    def _sample(self) -> None:
        """Queue depths and calls in flight, for the metrics, once a second."""
        metrics = self.telemetry.metrics
        if metrics is None:
            return
        for name, line in self.lines.items():
            model = self.served.get(name) or self.draining.get(name)
            if model is not None:
                labels = (model.name, str(model.major))
                metrics.queue_depth.labels(*labels).set(line.queued)
                metrics.model_in_flight.labels(*labels).set(line.in_flight)
        self._sampler = self._loop.call_later(1.0, self._sample)

    def _on_stall(self, service: str, stalled: bool) -> None:
        if self.health is not None:
            self._loop.create_task(self.health.set(service, NOT_SERVING if stalled else SERVING))
        if not stalled:
            log.warning("%s answers again: reporting it SERVING", service)

    async def _start(self, address: str, credentials: grpc.ServerCredentials | None, serving: bool) -> int:
        server = self._server = self._build()
        try:
            if credentials is None:
                bound = server.add_insecure_port(address)
            else:
                bound = server.add_secure_port(address, credentials)
        except RuntimeError as error:
            raise ServeError(
                f"cannot listen on {address} ({error}); is another server using it? "
                "choose another with --address HOST:PORT"
            ) from error
        if not bound:
            raise ServeError(
                f"cannot listen on {address}; is another server using it? choose another with --address HOST:PORT"
            )
        await server.start()
        if self.http is not None:
            try:
                await self.http.start()
            except BaseException:
                await server.stop(0)
                raise
        await self._set_serving(serving)
        self._sample()
        self._flush_access_log()
        return bound

    def _flush_access_log(self) -> None:
        self.telemetry.flush()
        self._flusher = self._loop.call_later(0.1, self._flush_access_log)

    async def _set_serving(self, serving: bool) -> None:
        assert self.health is not None
        status = SERVING if serving else NOT_SERVING
        await self.health.set("", status)
        for name in self.service_names:
            line = self.lines.get(name)
            await self.health.set(name, NOT_SERVING if line is not None and line.stalled else status)

    async def _stop(self, grace: float | None) -> None:
        for timer in (self._sampler, self._reload_timer, self._flusher):
            if timer is not None:
                timer.cancel()
        if self.health is not None:
            await self.health.shut_down()
        stopping = [self._server.stop(grace)] if self._server is not None else []
        if self.http is not None:
            stopping.append(self.http.stop(grace))
        await asyncio.gather(*stopping)
        for line in self.lines.values():
            line.close()

    # -- reloading ---------------------------------------------------------------------------

    def _prepare(self) -> _Prepared:
        """Compile ``proto_versions/`` again and decide what serves each line (in a worker thread)."""
        tree = load_protos(self.tree.root)
        _add_reflection_v1_file(tree)
        current = {(m.name, m.major): m for m in self.served.values()}
        models: dict[str, ServedModel] = {}
        if self.source is not None:
            for candidate in choose(self.source.candidates(), tree):
                kept = current.get((candidate.name, candidate.major))
                fingerprint = extract_schema(candidate.model).fingerprint
                if kept is not None and kept.version == candidate.version and kept.schema_fingerprint == fingerprint:
                    models[kept.service_name] = kept
                else:
                    bound = bind_model(candidate.model, tree, candidate.ref)
                    models[bound.service_name] = bound
        provided = {(m.name, m.major) for m in models.values()}
        gone: list[str] = []
        for (name, major), model in current.items():
            if (name, major) in provided:
                continue
            release = tree.release(name, major)
            if release is None:
                gone.append(model.service_name)
            elif release.version == model.version:
                models[model.service_name] = model  # still rendered as it was: it serves on unchanged
            else:
                raise ReloadError(
                    f"{tree.root / release.path} now holds {name}=={release.version} but the installed model "
                    f"serving {model.service_name} is {model.version}; install the new release (or name it in "
                    "the MODEL_REFs) and reload again"
                )
        return _Prepared(tree, models, gone)

    async def _reload(self) -> str:
        assert self._reloading is not None and self.router is not None and self.health is not None
        async with self._reloading:
            prepared = await self._loop.run_in_executor(None, self._prepare)
            before = dict(self.served)
            started, replaced, retired = [], [], []
            lines = dict(self.lines)
            for name, model in prepared.models.items():
                old = before.get(name)
                if old is model:
                    continue
                lines[name] = self._line(model)
                if old is None:
                    started.append(model)
                else:
                    replaced.append((old, model))
                    retired.append(self.lines[name])
            self.tree = prepared.tree
            self.served = prepared.models
            for name in prepared.gone:
                self.draining[name] = before[name]
            self.lines = lines
            self.router.handlers, self.router.denials = self._tables()  # one assignment each, on the loop
            for old, _ in replaced:
                self._report_releases([old], 0)
            self._report_releases([*started, *(new for _, new in replaced)], 1)
            for model in [*started, *(new for _, new in replaced)]:
                await self.health.set(model.service_name, SERVING)
            for name in prepared.gone:
                await self.health.set(name, NOT_SERVING)
                self._loop.call_later(self.options.drain, self._remove, name)
            for line in retired:
                self._retire(line)
            parts = [f"serving {m.name} {m.version} as {m.service_name} (new)" for m in started]
            parts += [f"serving {new.name} {new.version} as {new.service_name} (was {old.version})"
                      for old, new in replaced]
            parts += [f"stopping {name} (no longer in {self.tree.root})" for name in prepared.gone]
            summary = "; ".join(parts) or "nothing changed"
            log.info("reloaded: %s", summary)
            return summary

    def _remove(self, name: str) -> None:
        """A gone line's drain is over: its methods answer UNIMPLEMENTED from now on."""
        model = self.draining.pop(name, None)
        if model is None or self.router is None:
            return
        line = self.lines.pop(name, None)
        self._report_releases([model], 0)
        self.router.handlers, self.router.denials = self._tables()
        if line is not None:
            self._retire(line)

    def _retire(self, line: ModelLine, since: float | None = None) -> None:
        """Close a replaced line once the calls it took have their answers, and not before
        ``RETIRE_AFTER`` seconds: a call routed just before the swap may reach it a little later."""
        now = self._loop.time()
        since = now if since is None else since
        if line.in_flight or now - since < RETIRE_AFTER:
            self._loop.call_later(0.5, self._retire, line, since)
        else:
            line.close()

    def _schedule_reloads(self) -> None:
        interval = self.options.reload_interval
        if interval:
            self._reload_timer = self._loop.call_later(interval, self._periodic_reload)

    def _periodic_reload(self) -> None:
        async def run() -> None:
            try:
                await self._reload()
            except Exception as error:  # a failed reload changes nothing; say why and try again later
                log.error("reload failed, still serving what was served: %s", _reason(error))
            self._schedule_reloads()

        self._loop.create_task(run())

    # -- the public, thread-safe side ------------------------------------------------------------

    def start(self, serving: bool = True) -> int:
        """Bind the address, start serving and report SERVING (or, with ``serving=False``,
        NOT_SERVING until :meth:`set_serving`); returns the bound port."""
        host, port = parse_address(self.options.address)
        options = self.options
        credentials = server_credentials(options.tls_cert, options.tls_key, options.tls_client_ca)
        self._thread.start()
        try:
            self.port = self._run(self._start(f"{host}:{port}", credentials, serving))
        except BaseException:
            self._shutdown_loop()
            raise
        self._loop.call_soon_threadsafe(self._schedule_reloads)
        return self.port

    def set_serving(self, serving: bool) -> None:
        """Report every service (and the server) SERVING or NOT_SERVING."""
        self._run(self._set_serving(serving))

    def reload(self) -> str:
        """Serve what ``proto_versions/`` and the installed models say now; returns a summary.

        New major lines start, lines whose release changed are replaced (calls in flight finish
        on the old one), lines gone from ``proto_versions/`` report NOT_SERVING and answer
        UNIMPLEMENTED after ``drain`` seconds. A reload that fails changes nothing and raises
        :class:`ReloadError` saying why.
        """
        try:
            return str(self._run(self._reload()))
        except ReloadError:
            raise
        except Exception as error:
            raise ReloadError(_reason(error)) from error

    def stop(self, grace: float | None = 10.0) -> None:
        """Report NOT_SERVING, stop accepting calls, let in-flight calls finish within ``grace``.

        Calls still running after ``grace`` are cancelled; a model call that ignores that keeps
        its (daemon) thread, which ``protoreg serve`` does not wait for when it exits.
        """
        if not self._thread.is_alive():
            return
        try:
            self._run(self._stop(grace))
        finally:
            self._shutdown_loop()
            self.telemetry.shutdown()

    def _shutdown_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def batch_summary(self) -> list[str]:
        """One line per model line: calls and the sizes of the batches that served them."""
        return [f"{name}: {line.stats.summary()}" for name, line in self.lines.items()]


def _reason(error: BaseException) -> str:
    """One sentence for a failed reload."""
    if isinstance(error, ProtoregError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _observe_batch(seconds: Any, sizes: Any, size: int, elapsed: float) -> None:
    seconds.observe(elapsed)
    sizes.observe(size)


def create_server(
    models: Sequence[Any],
    protos: Path | ProtoTree,
    options: ServeOptions | None = None,
    refs: Sequence[str] | None = None,
    source: ModelSource | None = None,
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
    return ModelServer(bound, tree, options or ServeOptions(), source)


def serve_refs(refs: Sequence[str], protos: Path, options: ServeOptions, all_models: bool = False) -> ModelServer:
    """Resolve MODEL_REFs (and, with ``all_models``, every entry point) and build their server
    (what ``protoreg serve`` runs); a reload resolves them again."""
    source = ModelSource(refs, all_models)
    tree = load_protos(protos)
    chosen = choose(source.candidates(), tree)
    return create_server([c.model for c in chosen], tree, options, [c.ref for c in chosen], source)
