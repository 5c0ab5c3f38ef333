"""What the server tells operators: request ids, access logs, Prometheus metrics and traces.

Every method the server offers is wrapped once, at start-up, by :meth:`Telemetry.wrap`. Per call
the wrapper:

- takes the client's ``x-request-id`` (at most 128 characters of ``[A-Za-z0-9._:=+/-]``, the
  rest dropped) or makes a fresh one, and returns it in the trailing metadata ``x-request-id``;
  an ``INTERNAL`` answer carries the same id (``service/status.py``), and its traceback is logged
  under it;
- continues the client's W3C ``traceparent``: with tracing on (the ``protoreg[otel]`` extra and
  an ``OTEL_*`` exporter setting) as a server span with child spans for decode, validate,
  predict and encode; without it the incoming trace id still goes into the access log;
- counts the call in Prometheus metrics named as go-grpc-prometheus names them
  (``grpc_server_started_total``, ``grpc_server_handled_total`` by code,
  ``grpc_server_msg_received_total``/``sent``, ``grpc_server_handling_seconds``), when
  ``--metrics-address`` is given;
- writes one access line (method, model, version, code, duration, peer, request id, trace id),
  in text or JSON (``--log-format``), in batches at most 0.1 s late (:class:`AccessLog`). Input
  values are never logged.

Calls that gRPC refuses before a handler runs (an unknown method, a message over
``--max-message-bytes``) are not seen here, as in go-grpc-prometheus.

Unary calls over HTTP (Connect's protocol, ``service/http.py``) are observed the same way by
:meth:`Telemetry.observe`: the same request id rules, metrics (``grpc_type="unary"``), spans and
access lines, the latter with ``protocol=connect``.

Model lines report their batches (``protoreg_model_predict_seconds``, ``protoreg_model_batch_size``),
queue depth and calls in flight, and the served release of each line is
``protoreg_release_info{model,major,version} 1``. With ``--processes`` the workers write their
metrics to a shared directory (prometheus-client's multiprocess mode) and the parent serves the
sum (``service/supervisor.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import itertools
import json
import logging
import os
import re
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc

log = logging.getLogger("protoreg.service")

REQUEST_ID = "x-request-id"
MAX_REQUEST_ID = 128
_UNSAFE = re.compile(r"[^A-Za-z0-9._:=+/-]")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


def request_id_from(metadata: Any) -> str:
    """The client's ``x-request-id``, bounded and sanitised, or a fresh id."""
    for key, value in metadata or ():
        if key == REQUEST_ID:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
            cleaned = _UNSAFE.sub("", text)[:MAX_REQUEST_ID]
            if cleaned:
                return cleaned
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


# A fresh request id is a random prefix of the process and a counter: 32 hex digits like a UUID,
# unique across processes, without asking the kernel for random bytes on every call.
_ID_PREFIX = secrets.token_hex(8)
_ID_COUNTER = itertools.count()


def trace_id_from(metadata: Any) -> str | None:
    """The trace id of a valid W3C ``traceparent`` in ``metadata``."""
    for key, value in metadata or ():
        if key == "traceparent":
            found = _TRACEPARENT.match(str(value).strip().lower())
            if found and found[1] != "0" * 32:
                return found[1]
    return None


@dataclass(slots=True)
class Call:
    """One call as the telemetry sees it; the current one is in :data:`CURRENT`."""

    method: str
    request_id: str
    start: float
    model: str = ""
    version: str = ""
    code: str = "OK"
    trace_id: str | None = None
    received: int = 0
    sent: int = 0
    protocol: str = "grpc"  # or "connect": the JSON/HTTP side (service/http.py)
    # counts the call in the metrics; run by abort() before the status leaves, so that a client
    # that reads /metrics right after its answer sees its call counted
    count: Callable[[], None] | None = None
    counted: bool = False


CURRENT: contextvars.ContextVar[Call | None] = contextvars.ContextVar("protoreg_call", default=None)


def record_code(code: str) -> None:
    """Note the status the current call ends with and count it (called just before the server
    sends that status)."""
    call = CURRENT.get()
    if call is not None:
        call.code = code
        if call.count is not None:
            call.count()


# -- logging ----------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the call's fields, the traceback."""

    FIELDS = ("method", "model", "version", "code", "duration_ms", "peer", "request_id", "trace_id")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in self.FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(log_format: str) -> None:
    """The server's logging: INFO and up on stderr, as text lines or JSON objects."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)


class AccessLog:
    """One line per call, in the log's format, written in batches.

    ``logging`` costs tens of microseconds a record (a record object, a formatter, a lock, a write
    and a flush), as much as the rest of a call; these lines are built from values the server
    made safe already (method paths, names, sanitised request ids, hex trace ids), kept in memory
    and written together by :meth:`flush`, which the server calls every 0.1 s and when it stops.
    """

    def __init__(self, log_format: str = "text", stream: Any = None) -> None:
        self.json = log_format == "json"
        self.stream = stream
        self.lines: list[str] = []
        self.pending: list[tuple[Call, str, float, float]] = []
        self._second = -1
        self._stamp = ""

    def _time(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            moment = datetime.fromtimestamp(second, UTC)
            self._stamp = moment.isoformat() if self.json else moment.strftime("%Y-%m-%d %H:%M:%S")
        millis = int((now - second) * 1000)
        if self.json:
            return f"{self._stamp[:-6]}.{millis:03d}+00:00"
        return f"{self._stamp},{millis:03d}"

    def add(self, call: Call, peer: str, duration_ms: float) -> None:
        """Keep the call's line; it is formatted, with the others, when the lines are written."""
        self.pending.append((call, peer, duration_ms, time.time()))

    def _format(self, call: Call, peer: str, duration_ms: float, now: float) -> None:
        model = f"{call.model}=={call.version}" if call.model else "-"
        trace = f" trace_id={call.trace_id}" if call.trace_id else ""
        protocol = "" if call.protocol == "grpc" else f" protocol={call.protocol}"
        message = (f"{call.method} {call.code} {model} {duration_ms:.3f}ms peer={peer} "
                   f"request_id={call.request_id}{trace}{protocol}")
        stamp = self._time(now)
        if not self.json:
            self.lines.append(f"{stamp} INFO protoreg.access: {message}")
            return
        fields = (f'"time": "{stamp}", "level": "INFO", "logger": "protoreg.access", '
                  f'"message": {json.dumps(message)}, "method": "{call.method}", ')
        if call.model:
            fields += f'"model": "{call.model}", "version": "{call.version}", '
        fields += (f'"code": "{call.code}", "duration_ms": {duration_ms}, "peer": {json.dumps(peer)}, '
                   f'"request_id": "{call.request_id}"')
        if call.trace_id:
            fields += f', "trace_id": "{call.trace_id}"'
        if call.protocol != "grpc":
            fields += f', "protocol": "{call.protocol}"'
        self.lines.append("{" + fields + "}")

    def flush(self) -> None:
        for entry in self.pending:
            self._format(*entry)
        self.pending.clear()
        if self.lines:
            stream = self.stream if self.stream is not None else sys.stderr
            text = "\n".join(self.lines) + "\n"
            self.lines.clear()
            try:
                stream.write(text)
                stream.flush()
            except (OSError, ValueError):  # a closed or full stderr must not stop the server
                pass


# -- metrics ----------------------------------------------------------------------------------

_GRPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")
_LINE_LABELS = ("model", "major")
# handling time buckets: from a fraction of a millisecond (a cached answer) to a minute
SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The Prometheus metrics (prometheus-client) of one server process."""

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        registry = REGISTRY if registry is None else registry
        self.registry = registry
        self.started = Counter("grpc_server_started_total", "RPCs started on the server.", _GRPC_LABELS,
                               registry=registry)
        self.handled = Counter("grpc_server_handled_total", "RPCs completed on the server, by status code.",
                               (*_GRPC_LABELS, "grpc_code"), registry=registry)
        self.received = Counter("grpc_server_msg_received_total", "Stream messages received on the server.",
                                _GRPC_LABELS, registry=registry)
        self.sent = Counter("grpc_server_msg_sent_total", "Stream messages sent by the server.", _GRPC_LABELS,
                            registry=registry)
        self.seconds = Histogram("grpc_server_handling_seconds", "Time to handle an RPC, to its status.",
                                 _GRPC_LABELS, buckets=SECONDS, registry=registry)
        self.in_flight = Gauge("protoreg_calls_in_flight", "RPCs being handled.", registry=registry,
                               multiprocess_mode="livesum")
        self.predict_seconds = Histogram("protoreg_model_predict_seconds",
                                         "Time of one model call (a batch), in its model thread.",
                                         _LINE_LABELS, buckets=SECONDS, registry=registry)
        self.batch_size = Histogram("protoreg_model_batch_size", "Inputs per model call.", _LINE_LABELS,
                                    buckets=BATCH_SIZES, registry=registry)
        self.queue_depth = Gauge("protoreg_model_queue_depth", "Calls waiting for the model.", _LINE_LABELS,
                                 registry=registry, multiprocess_mode="livesum")
        self.model_in_flight = Gauge("protoreg_model_calls_in_flight", "Calls queued or in the model.",
                                     _LINE_LABELS, registry=registry, multiprocess_mode="livesum")
        self.release = Gauge("protoreg_release_info", "The release served on each model line (1).",
                             (*_LINE_LABELS, "version"), registry=registry, multiprocess_mode="max")


@dataclass
class _MethodMetrics:
    """A method's metric children, looked up once."""

    started: Any
    received: Any
    sent: Any
    seconds: Any
    handled: dict[str, Any] = field(default_factory=dict)
    labels: tuple[str, str, str] = ("", "", "")


def _grpc_type(handler: grpc.RpcMethodHandler) -> str:
    if handler.request_streaming:
        return "bidi_stream" if handler.response_streaming else "client_stream"
    return "server_stream" if handler.response_streaming else "unary"


# -- tracing ----------------------------------------------------------------------------------


def tracing_requested() -> bool:
    """Whether the environment asks for traces (an ``OTEL_*`` exporter setting, not disabled)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "")
    if exporter:
        return exporter.lower() != "none"
    return any(os.environ.get(name) for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


class Tracing:
    """OpenTelemetry spans (the optional ``protoreg[otel]`` extra), exported as ``OTEL_*`` says."""

    def __init__(self) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")[0].strip().lower()
        exporter: Any
        if exporter_name == "console":
            exporter = ConsoleSpanExporter()
        elif exporter_name == "otlp":
            protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")
            if protocol == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

                exporter = Grpc()
            else:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

                exporter = Http()
        else:
            raise ValueError(f'OTEL_TRACES_EXPORTER="{exporter_name}" is not one protoreg knows (otlp, console, none)')
        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "protoreg")})
        self.provider = TracerProvider(resource=resource)
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("protoreg")
        self._trace = trace
        self._propagator = TraceContextTextMapPropagator()
        self._kind = trace.SpanKind.SERVER

    def start(self, method: str, metadata: Any) -> tuple[Any, Any, str]:
        """A server span continuing the caller's ``traceparent``, made current; (span, token, trace id)."""
        from opentelemetry import context as otel_context

        carrier = {key: value for key, value in metadata or () if isinstance(value, str)}
        parent = self._propagator.extract(carrier)
        service, _, name = method.lstrip("/").partition("/")
        span = self.tracer.start_span(method.lstrip("/"), context=parent, kind=self._kind, attributes={
            "rpc.system": "grpc", "rpc.service": service, "rpc.method": name})
        token = otel_context.attach(self._trace.set_span_in_context(span))
        return span, token, format(span.get_span_context().trace_id, "032x")

    def end(self, span: Any, token: Any, code: str) -> None:
        from opentelemetry import context as otel_context
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute("rpc.grpc.status_code", getattr(grpc.StatusCode, code, grpc.StatusCode.UNKNOWN).value[0])
        if code != "OK":
            span.set_status(Status(StatusCode.ERROR, code))
        span.end()
        otel_context.detach(token)

    def span(self, name: str) -> Any:
        return self.tracer.start_as_current_span(name)

    def shutdown(self) -> None:
        self.provider.shutdown()


# -- the telemetry of a server ----------------------------------------------------------------


class Telemetry:
    """Request ids, access lines, metrics and spans for every call of one server."""

    def __init__(self, *, access_log: bool | AccessLog = True, metrics: Metrics | None = None,
                 tracing: Tracing | None = None) -> None:
        self.access_log: AccessLog | None = (
            AccessLog() if access_log is True else access_log if isinstance(access_log, AccessLog) else None)
        self.metrics = metrics
        self.tracing = tracing
        self._methods: dict[str, _MethodMetrics] = {}

    def span(self, name: str) -> Any:
        """A child span of the current call (a no-op without tracing)."""
        if self.tracing is None:
            return contextlib.nullcontext()
        return self.tracing.span(name)

    def _method_metrics(self, path: str, kind: str) -> _MethodMetrics | None:
        metrics = self.metrics
        if metrics is None:
            return None
        found = self._methods.get(path)
        if found is None:
            service, _, method = path.lstrip("/").partition("/")
            labels = (kind, service, method)
            found = _MethodMetrics(
                started=metrics.started.labels(*labels), received=metrics.received.labels(*labels),
                sent=metrics.sent.labels(*labels), seconds=metrics.seconds.labels(*labels), labels=labels,
            )
            self._methods[path] = found
        return found

    # -- one call ----------------------------------------------------------------------------

    def _begin(self, path: str, metadata: Any, method_metrics: _MethodMetrics | None, model: tuple[str, str],
               protocol: str = "grpc") -> tuple[Call, Any, Any, contextvars.Token[Call | None]]:
        call = Call(path, request_id_from(metadata), time.perf_counter(), model[0], model[1], protocol=protocol)
        span = token = None
        if self.tracing is not None:
            span, token, call.trace_id = self.tracing.start(path, metadata)
        else:
            call.trace_id = trace_id_from(metadata)
        if method_metrics is not None:
            method_metrics.started.inc()
            assert self.metrics is not None
            self.metrics.in_flight.inc()
            call.count = functools.partial(self._count, call, method_metrics)
        return call, span, token, CURRENT.set(call)

    def _count(self, call: Call, method_metrics: _MethodMetrics) -> None:
        """The call's ``handled`` count, time and messages; once."""
        if call.counted:
            return
        call.counted = True
        handled = method_metrics.handled.get(call.code)
        if handled is None:
            assert self.metrics is not None
            handled = method_metrics.handled[call.code] = self.metrics.handled.labels(*method_metrics.labels, call.code)
        handled.inc()
        method_metrics.seconds.observe(time.perf_counter() - call.start)
        if call.received:
            method_metrics.received.inc(call.received)
        if call.sent:
            method_metrics.sent.inc(call.sent)
        assert self.metrics is not None
        self.metrics.in_flight.dec()

    def _end(self, call: Call, peer: Callable[[], str], method_metrics: _MethodMetrics | None,
             span: Any, token: Any, current: contextvars.Token[Call | None]) -> None:
        CURRENT.reset(current)
        seconds = time.perf_counter() - call.start
        if method_metrics is not None:
            self._count(call, method_metrics)
        if span is not None:
            assert self.tracing is not None
            self.tracing.end(span, token, call.code)
        if self.access_log is not None:
            self.access_log.add(call, peer(), round(seconds * 1000, 3))

    @contextlib.contextmanager
    def observe(self, path: str, metadata: Any, peer: Callable[[], str], model: tuple[str, str] = ("", ""),
                protocol: str = "connect") -> Iterator[Call]:
        """One unary call of another transport than gRPC (the Connect protocol), observed as
        :meth:`wrap` observes a gRPC call: the same request id, metrics, span and access line.

        The caller sets ``code`` on the yielded call (a :class:`Status` it answers with); an
        exception leaving the block counts as ``CANCELLED`` (the client went away, or the
        server is stopping) unless a code was set.
        """
        method_metrics = self._method_metrics(path, "unary")
        call, span, token, current = self._begin(path, metadata, method_metrics, model, protocol)
        try:
            yield call
        except BaseException:
            if call.code == "OK":
                call.code = "CANCELLED"
            raise
        finally:
            self._end(call, peer, method_metrics, span, token, current)

    @staticmethod
    def _code(error: BaseException, call: Call, context: grpc.aio.ServicerContext) -> str:
        if isinstance(error, asyncio.CancelledError):
            remaining = context.time_remaining()
            return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
        if call.code != "OK":
            return call.code  # set by abort()
        code = context.code() if hasattr(context, "code") else None
        if isinstance(code, grpc.StatusCode) and code is not grpc.StatusCode.OK:
            return code.name
        return "UNKNOWN"

    def wrap(self, path: str, handler: grpc.RpcMethodHandler, model: tuple[str, str] = ("", "")
             ) -> grpc.RpcMethodHandler:
        """``handler`` with request ids, access lines, metrics and spans around every call."""
        method_metrics = self._method_metrics(path, _grpc_type(handler))
        begin, end, code_of = self._begin, self._end, self._code
        if not handler.request_streaming and not handler.response_streaming:
            inner = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                call, span, token, current = begin(path, context.invocation_metadata(), method_metrics, model)
                context.set_trailing_metadata(((REQUEST_ID, call.request_id),))
                try:
                    return await inner(request, context)
                except BaseException as error:
                    call.code = code_of(error, call, context)
                    raise
                finally:
                    end(call, context.peer, method_metrics, span, token, current)

            return grpc.unary_unary_rpc_method_handler(unary, handler.request_deserializer,
                                                       handler.response_serializer)

        streaming_requests = handler.request_streaming
        inner_stream: Callable[..., AsyncIterator[Any]] = (
            handler.stream_stream if handler.request_streaming else handler.unary_stream)

        async def counted(requests: AsyncIterator[Any], call: Call) -> AsyncIterator[Any]:
            async for item in requests:
                call.received += 1
                yield item

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            call, span, token, current = begin(path, context.invocation_metadata(), method_metrics, model)
            context.set_trailing_metadata(((REQUEST_ID, call.request_id),))
            try:
                source = counted(request, call) if streaming_requests else request
                responses = inner_stream(source, context)
                if inspect.isawaitable(responses):  # a coroutine handler writes, or aborts, itself
                    await responses
                    return
                async for response in responses:
                    call.sent += 1
                    yield response
            except BaseException as error:
                call.code = code_of(error, call, context)
                raise
            finally:
                end(call, context.peer, method_metrics, span, token, current)

        if handler.request_streaming:
            return grpc.stream_stream_rpc_method_handler(stream, handler.request_deserializer,
                                                         handler.response_serializer)
        return grpc.unary_stream_rpc_method_handler(stream, handler.request_deserializer, handler.response_serializer)

    def flush(self) -> None:
        """Write the access lines kept so far."""
        if self.access_log is not None:
            self.access_log.flush()

    def shutdown(self) -> None:
        self.flush()
        if self.tracing is not None:
            self.tracing.shutdown()
