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
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha._async import ReflectionServicer

from protoreg.registry.errors import ProtoregError
from protoreg.registry.loader import load_model
from protoreg.registry.naming import (
    PREDICT_METHOD,
    PREDICT_STREAM_METHOD,
    STREAM_REQUEST_MESSAGE,
    STREAM_RESPONSE_MESSAGE,
)

from .address import parse_address
from .auth import TokenSource
from .batching import BatchPolicy, CallError, ModelLine
from .binding import ServedModel, bind_model
from .capacity import DEFAULT_ADDRESS, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_STREAMS, DEFAULT_WORKERS, watcher_limit
from .compile import ProtoTree, load_protos
from .convert import RequestError, Violation
from .health import NOT_SERVING, SERVING, HealthServicer
from .health import SERVICE as HEALTH_SERVICE
from .limits import Slots
from .registry_service import REGISTRY_SERVICE, RegistryServicer
from .status import Status, abort, internal, invalid, undecodable
from .tls import server_credentials

log = logging.getLogger("protoreg.service")

REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
REFLECTION_V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"
STREAM_WINDOW = 64  # PredictStream items read ahead of the answers (they batch with each other)


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


# -- model services ---------------------------------------------------------------------------


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class ModelServicer:
    """``Predict`` and ``PredictStream`` of one served model, through its :class:`ModelLine`."""

    def __init__(self, model: ServedModel, tree: ProtoTree, line: ModelLine, streams: Slots) -> None:
        self.model = model
        self.line = line
        self.streams = streams
        self.subject = f"model {model.name} {model.version}"
        package = model.release.package
        self.stream_request = tree.message_class(f"{package}.{STREAM_REQUEST_MESSAGE}")
        self.stream_response = tree.message_class(f"{package}.{STREAM_RESPONSE_MESSAGE}")

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        service = self.model.service_name
        return {
            f"/{service}/{PREDICT_METHOD}": grpc.unary_unary_rpc_method_handler(self.predict),
            f"/{service}/{PREDICT_STREAM_METHOD}": grpc.stream_stream_rpc_method_handler(self.predict_stream),
        }

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
            codec = self.model.codec
            try:
                data = self._input(codec.parse(request))
            except RequestError as error:
                raise invalid(str(error), error.violations) from error
            try:
                output = await self.line.call(data, _deadline(context))
            except CallError as error:
                raise self._failure(error) from error
            return self._response(output).SerializeToString()  # type: ignore[no-any-return]
        except Status as status:
            await abort(context, status)
            raise AssertionError("unreachable") from None  # abort raises

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
        deadline = _deadline(context)
        index = 0
        try:
            async for raw in requests:
                try:
                    try:
                        item = self.stream_request.FromString(raw)
                    except Exception as error:
                        raise RequestError(f"bytes are not a valid {STREAM_REQUEST_MESSAGE} ({error})") from error
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
    await abort(context, Status(
        "UNAUTHENTICATED",
        "this server needs a bearer token: send the metadata `authorization: Bearer <token>` "
        "(protoreg predict --auth-token-file PATH)",
    ))


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
    probed.
    """

    def __init__(self, handlers: dict[str, grpc.RpcMethodHandler], tokens: TokenSource | None) -> None:
        self.handlers = handlers
        self.tokens = tokens

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        handler = self.handlers.get(method)
        tokens = self.tokens
        if tokens is None or method.startswith(f"/{HEALTH_SERVICE}/"):
            return handler
        if tokens.authorized(handler_call_details.invocation_metadata):
            return handler
        return _denial(handler)


# -- the server -------------------------------------------------------------------------------


class ModelServer:
    """A configured gRPC server for some models; :meth:`start` binds, :meth:`stop` drains.

    The server's event loop runs in a thread of its own; every public method is called from any
    other thread.
    """

    def __init__(self, models: Sequence[ServedModel], tree: ProtoTree, options: ServeOptions) -> None:
        self.models = list(models)
        self.tree = tree
        self.options = options
        self.port = 0
        tokens = options.auth_token
        self.tokens = TokenSource.fixed(tokens) if isinstance(tokens, str) else tokens
        self.service_names = [m.service_name for m in self.models]
        if tree.registry_file is not None:
            self.service_names.append(REGISTRY_SERVICE)
        self.lines: dict[str, ModelLine] = {}
        self.health: HealthServicer | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="protoreg-server", daemon=True)
        self._server: grpc.aio.Server | None = None
        _add_reflection_v1_file(tree)

    # -- running on the loop ---------------------------------------------------------------

    def _run(self, coroutine: Awaitable[Any], timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)  # type: ignore[arg-type]

    def _build(self) -> grpc.aio.Server:
        """The aio server with every handler (on the loop: grpc.aio binds to the running loop)."""
        options = self.options
        streams = Slots(options.max_streams, "open streams (PredictStream, reflection and health Watch)",
                        "--max-streams")
        watchers = Slots(watcher_limit(options.max_streams), "open health Watch streams", "--max-streams / 8")
        self.health = health = HealthServicer(
            watchers, authorized=None if self.tokens is None else self.tokens.authorized_context)
        handlers: dict[str, grpc.RpcMethodHandler] = {}
        for model in self.models:
            name = model.service_name
            line = ModelLine(
                f"{model.name} {model.version}", model.instance, options.batch, self._loop,
                threads=options.workers if not callable(getattr(model.instance, "predict_batch", None)) else 1,
                on_stall=functools.partial(self._on_stall, name),
            )
            self.lines[name] = line
            handlers.update(ModelServicer(model, self.tree, line, streams).handlers())
        if self.tree.registry_file is not None:
            handlers.update(RegistryServicer(self.models, self.tree).handlers())
        handlers.update(health.handlers())
        reflected = [*self.service_names, HEALTH_SERVICE, REFLECTION_V1ALPHA, REFLECTION_V1]
        reflection = ReflectionServicer(reflected, pool=self.tree.pool)
        for name in (REFLECTION_V1ALPHA, REFLECTION_V1):
            path = f"/{name}/ServerReflectionInfo"
            handlers[path] = _reflection_handler(reflection, streams, path)
        limit = options.max_message_bytes
        server = grpc.aio.server(
            handlers=[Router(handlers, self.tokens)],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                # a second server on the same port must fail, unless --processes asked to share it
                ("grpc.so_reuseport", 1 if options.reuse_port else 0),
            ],
        )
        return server

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
        await self._set_serving(serving)
        return bound

    async def _set_serving(self, serving: bool) -> None:
        assert self.health is not None
        status = SERVING if serving else NOT_SERVING
        await self.health.set("", status)
        for name in self.service_names:
            line = self.lines.get(name)
            await self.health.set(name, NOT_SERVING if line is not None and line.stalled else status)

    async def _stop(self, grace: float | None) -> None:
        if self.health is not None:
            await self.health.shut_down()
        if self._server is not None:
            await self._server.stop(grace)
        for line in self.lines.values():
            line.close()

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
        return self.port

    def set_serving(self, serving: bool) -> None:
        """Report every service (and the server) SERVING or NOT_SERVING."""
        self._run(self._set_serving(serving))

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

    def _shutdown_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def batch_summary(self) -> list[str]:
        """One line per model line: calls and the sizes of the batches that served them."""
        return [f"{name}: {line.stats.summary()}" for name, line in self.lines.items()]

    def call_soon(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the server's loop (thread-safe)."""
        self._loop.call_soon_threadsafe(fn)


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
