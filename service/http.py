"""``protoreg serve --http-address``: the same contract as JSON over HTTP, health, and the browser.

One aiohttp site on the gRPC server's own event loop (started and stopped by
:class:`~protoreg.service.server.ModelServer`) answers:

- **Connect's unary protocol** (https://connectrpc.com/docs/protocol/): ``POST
  /<package>.<Service>/<Method>`` with ``Content-Type: application/json`` (the proto3 JSON mapping,
  through ``google.protobuf.json_format``) or ``application/proto``, optionally
  ``Connect-Protocol-Version: 1`` and ``Connect-Timeout-Ms``. Every model's ``Predict`` and the
  registry service's methods are served, looked up in the server's current table
  (:attr:`ModelServer.unary`), so a reload is seen at once. A call goes through the same
  :class:`~protoreg.service.unary.UnaryMethod` as on gRPC (validation, the model line, the status
  of every failure), the same bearer-token check, the same request ids, metrics, spans and access
  lines (:meth:`Telemetry.observe`). A failure is a Connect error, ``{"code", "message",
  "details"}`` with the HTTP status the protocol maps its code to; ``INVALID_ARGUMENT`` carries the
  same ``google.rpc.BadRequest`` as on gRPC, base64 in ``value`` and readable in ``debug``. A body
  over ``--max-message-bytes`` is ``resource_exhausted`` with HTTP 413 (the one departure from the
  protocol's table, which says 429: that invites a retry, and a retry of the same body never
  helps). Streams (``PredictStream``, reflection, health ``Watch``) stay gRPC-only: a Connect
  streaming request gets the protocol's end-of-stream error ``unimplemented``.
- ``GET /healthz`` (the process answers) and ``GET /readyz`` (200 while the overall health status
  is ``SERVING``, 503 otherwise), for load balancers; neither needs the token.
- ``GET /``: the registry browser. With ``--site DIR`` the pages of ``protoreg site --out DIR``,
  rendered from ``DIR/site.json`` (never the registry database) with the served releases marked
  and the try-it forms posting here; without it, a page listing what is served, with a JSON try-it
  form and a ``curl`` command per line.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import struct
import time
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message

from protoreg.registry.errors import ProtoregError
from protoreg.registry.naming import PREDICT_METHOD

from .address import parse_address
from .auth import AUTHORIZATION, UNAUTHENTICATED
from .health import OVERALL, SERVING
from .status import Status, bad_request, internal, invalid
from .tls import server_ssl_context

if TYPE_CHECKING:
    from .server import ModelServer
    from .unary import UnaryMethod

log = logging.getLogger("protoreg.service")

# Connect's code names and the HTTP status of each (the protocol's "Error Codes" table).
CONNECT_CODES = {
    "CANCELLED": ("canceled", 499),
    "UNKNOWN": ("unknown", 500),
    "INVALID_ARGUMENT": ("invalid_argument", 400),
    "DEADLINE_EXCEEDED": ("deadline_exceeded", 504),
    "NOT_FOUND": ("not_found", 404),
    "ALREADY_EXISTS": ("already_exists", 409),
    "PERMISSION_DENIED": ("permission_denied", 403),
    "RESOURCE_EXHAUSTED": ("resource_exhausted", 429),
    "FAILED_PRECONDITION": ("failed_precondition", 400),
    "ABORTED": ("aborted", 409),
    "OUT_OF_RANGE": ("out_of_range", 400),
    "UNIMPLEMENTED": ("unimplemented", 501),
    "INTERNAL": ("internal", 500),
    "UNAVAILABLE": ("unavailable", 503),
    "DATA_LOSS": ("data_loss", 500),
    "UNAUTHENTICATED": ("unauthenticated", 401),
}
CODECS = {"application/json": "json", "application/proto": "proto"}  # Connect's unary content types
STREAMING = "application/connect+"  # Connect's streaming content types
END_STREAM = 0x02  # the envelope flag of a stream's last message
REQUEST_ID_HEADER = "X-Request-Id"
MAX_TIMEOUT_DIGITS = 10  # Connect-Timeout-Ms: a positive integer of at most 10 digits
PAGE_TYPES = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".json": "application/json",
    ".proto": "text/plain",
}


class HttpError(ProtoregError):
    """The HTTP side could not start (its address is in use, ...)."""


def connect_error(status: Status) -> dict[str, Any]:
    """``status`` as a Connect error: code, message and, for ``INVALID_ARGUMENT``, the same
    ``google.rpc.BadRequest`` as gRPC sends (binary in ``value``, JSON in ``debug``)."""
    code = CONNECT_CODES.get(status.code, CONNECT_CODES["UNKNOWN"])[0]
    if status.code != "INVALID_ARGUMENT":
        return {"code": code, "message": status.message}
    message, detail = bad_request(status)
    error: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        error["details"] = [{
            "type": detail.DESCRIPTOR.full_name,
            "value": base64.b64encode(detail.SerializeToString()).decode("ascii").rstrip("="),
            "debug": json_format.MessageToDict(detail),
        }]
    return error


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def error_response(status: Status, http_status: int | None = None, request_id: str | None = None) -> web.Response:
    """A unary call's failure: a Connect error with the HTTP status of its code."""
    headers = {REQUEST_ID_HEADER: request_id} if request_id else None
    return web.Response(status=http_status or CONNECT_CODES.get(status.code, CONNECT_CODES["UNKNOWN"])[1],
                        body=_json(connect_error(status)), content_type="application/json", headers=headers)


def _stream_refusal(status: Status, content_type: str) -> web.Response:
    """A Connect streaming call's failure: HTTP 200 and one end-of-stream message with the error."""
    end = _json({"error": connect_error(status)})
    return web.Response(status=200, body=struct.pack(">BI", END_STREAM, len(end)) + end, content_type=content_type)


def _metadata(request: web.Request) -> list[tuple[str, str]]:
    """The request's headers as gRPC metadata: lower-case keys."""
    return [(key.lower(), value) for key, value in request.headers.items()]


def _peer(request: web.Request) -> str:
    """The client's address, written as gRPC writes peers (``ipv4:127.0.0.1:51022``)."""
    peername = request.transport.get_extra_info("peername") if request.transport is not None else None
    if not peername:
        return "unknown"
    host, port = peername[0], peername[1]
    return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"


def _timeout(request: web.Request) -> float | None:
    """Seconds of ``Connect-Timeout-Ms``, or None; a malformed one is INVALID_ARGUMENT."""
    text = request.headers.get("Connect-Timeout-Ms")
    if text is None:
        return None
    if not text.isdigit() or len(text) > MAX_TIMEOUT_DIGITS:
        raise invalid(f'Connect-Timeout-Ms "{text[:32]}" is not a positive integer of at most 10 digits')
    return int(text) / 1000


def example_request(request_class: type[Message]) -> dict[str, Any]:
    """A request of ``request_class`` with every field present, in the proto3 JSON mapping: zero
    values, the first enum value, empty lists and maps, nested messages filled the same way (once
    per message on a path, so recursive messages end). ``json_format`` writes it, so the names and
    forms are the ones the endpoint reads."""
    message = request_class()
    _fill(message, frozenset())
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def _fill(message: Message, outer: frozenset[str]) -> None:
    name = message.DESCRIPTOR.full_name
    message.SetInParent()
    if name.startswith("google.protobuf.") or name in outer:  # well-known types print their zero as is
        return
    for fd in message.DESCRIPTOR.fields:
        if fd.is_repeated:
            continue
        if fd.message_type is not None:
            _fill(getattr(message, fd.name), outer | {name})
        elif fd.enum_type is not None:
            values = [v.number for v in fd.enum_type.values if v.number != 0]
            setattr(message, fd.name, values[0] if values else 0)
        else:
            setattr(message, fd.name, fd.default_value)


class HttpEndpoint:
    """The HTTP side of one :class:`ModelServer`, on its event loop."""

    def __init__(self, server: ModelServer) -> None:
        options = server.options
        assert options.http_address is not None
        self.server = server
        self.host, self.port = parse_address(options.http_address, "--http-address")
        self.limit = options.max_message_bytes
        self.ssl = server_ssl_context(options.tls_cert, options.tls_key, options.tls_client_ca)
        self.site_data: dict[str, Any] | None = None
        if options.site is not None:
            from protoreg.registry.site.pages import load_site_data

            self.site_data = load_site_data(options.site)
        self._pages: tuple[tuple[tuple[str, str], ...], dict[str, bytes]] | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._in_flight = 0
        self._idle: asyncio.Event | None = None

    # -- starting and stopping ---------------------------------------------------------------

    async def start(self) -> int:
        """Bind ``--http-address`` and answer; returns the bound port."""
        app = web.Application(client_max_size=self.limit)
        app.router.add_route("*", "/{path:.*}", self._dispatch)
        # handler_cancellation: a client that goes away cancels its call, as on gRPC (a queued
        # call leaves its queue); shutdown_timeout=0: stop() waits for calls itself, up to grace
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host.strip("[]"), self.port, ssl_context=self.ssl,
                           reuse_port=self.server.options.reuse_port or None)
        try:
            await site.start()
        except OSError as error:
            await runner.cleanup()
            raise HttpError(
                f"cannot listen on {self.host}:{self.port} for HTTP ({error.strerror or error}); is another "
                "server using it? choose another with --http-address HOST:PORT"
            ) from error
        self._runner, self._site = runner, site
        self.port = runner.addresses[0][1]
        return self.port

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl else 'http'}://{self.host}:{self.port}"

    async def stop(self, grace: float | None) -> None:
        """Stop listening, let calls in flight finish within ``grace`` seconds, then cut the rest."""
        if self._runner is None:
            return
        assert self._site is not None
        await self._site.stop()
        if self._in_flight:
            self._idle = asyncio.Event()
            try:
                await asyncio.wait_for(self._idle.wait(), grace)
            except TimeoutError:
                pass
        await self._runner.cleanup()
        self._runner = None

    # -- every request -----------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self._in_flight += 1
        try:
            if request.method == "POST":
                return await self._call(request)
            if request.method in ("GET", "HEAD"):
                return await self._get(request)
            return web.Response(status=405, headers={"Allow": "GET, HEAD, POST"},
                                text=f"{request.method} is not answered here: POST calls a method, GET reads a page\n")
        finally:
            self._in_flight -= 1
            if not self._in_flight and self._idle is not None:
                self._idle.set()

    def _authorized(self, metadata: list[tuple[str, str]]) -> bool:
        tokens = self.server.tokens
        return tokens is None or tokens.authorized(metadata)

    def _unknown(self, path: str) -> Status:
        """UNIMPLEMENTED for a path that is no unary method served here, saying what is."""
        router = self.server.router
        if router is not None and path in router.handlers:
            return Status("UNIMPLEMENTED", f'"{path}" is a stream, served over gRPC only (on --address); over HTTP '
                                           f"this server answers unary methods, such as each model's {PREDICT_METHOD}")
        return Status("UNIMPLEMENTED", f'"{path[:256]}" is not a method this server answers; POST '
                                       f"/<package>.<Service>/{PREDICT_METHOD} of a served model (GET / lists them)")

    # -- Connect unary calls -----------------------------------------------------------------

    async def _call(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        metadata = _metadata(request)
        content_type = request.content_type
        if content_type.startswith(STREAMING):
            # refused before any handler: Connect's streaming protocol is not spoken here
            status = (self._unknown(path) if self._authorized(metadata)
                      else Status("UNAUTHENTICATED", UNAUTHENTICATED))
            if status.code == "UNIMPLEMENTED" and path in self.server.unary:
                status = Status("UNIMPLEMENTED", f'"{path}" is unary: call it with Connect\'s unary protocol '
                                                 "(Content-Type: application/json or application/proto)")
            return _stream_refusal(status, content_type)
        codec = CODECS.get(content_type)
        if codec is None:
            return web.Response(
                status=415, headers={"Accept-Post": "application/json, application/proto"},
                text=f'Content-Type "{request.headers.get("Content-Type", "")[:64]}" is not one this endpoint reads: '
                     "send application/json (the proto3 JSON mapping) or application/proto, Connect's unary "
                     "protocol; gRPC is served on --address\n")
        version = request.headers.get("Connect-Protocol-Version")
        if version is not None and version != "1":
            return error_response(invalid(f'Connect-Protocol-Version "{version[:16]}" is not one this server '
                                          'speaks; send "1" or leave it out'))
        method = self.server.unary.get(path)
        authorized = self._authorized(metadata)
        if method is None:  # refused before any handler, as gRPC does, so not counted
            return error_response(self._unknown(path) if authorized else Status("UNAUTHENTICATED", UNAUTHENTICATED))
        if not authorized:  # counted, as on gRPC, and refused without reading the body
            return await self._answer(request, path, method, codec, b"", metadata, authorized)
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        return await self._answer(request, path, method, codec, body, metadata, authorized)

    async def _body(self, request: web.Request) -> bytes | web.Response:
        """The request body, or RESOURCE_EXHAUSTED (HTTP 413) when it is over ``--max-message-bytes``."""
        refusal = error_response(
            Status("RESOURCE_EXHAUSTED", f"the request body is larger than this server's limit of {self.limit} "
                                         "bytes (--max-message-bytes)"), 413)
        if request.content_length is not None and request.content_length > self.limit:
            return refusal
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            return refusal

    async def _answer(self, request: web.Request, path: str, method: UnaryMethod, codec: str, body: bytes,
                      metadata: list[tuple[str, str]], authorized: bool) -> web.Response:
        telemetry = self.server.telemetry
        with telemetry.observe(path, metadata, lambda: _peer(request), method.model) as call:
            try:
                if not authorized:
                    raise Status("UNAUTHENTICATED", UNAUTHENTICATED)
                seconds = _timeout(request)
                with telemetry.span("decode"):
                    message = self._parse(method.request, codec, body)
                if method.notice is not None:
                    method.notice(message, _peer(request))
                if seconds is None:
                    response = await method.call(message, None)
                else:
                    try:
                        async with asyncio.timeout(seconds):
                            response = await method.call(message, time.monotonic() + seconds)
                    except TimeoutError:
                        raise Status("DEADLINE_EXCEEDED", f"the call's deadline ({seconds:g} s, Connect-Timeout-Ms) "
                                                          "passed") from None
                payload = self._encode(response, codec)
            except Status as status:
                call.code = status.code
                return error_response(status, request_id=call.request_id)
            except Exception as error:  # a bug: INTERNAL with the request id, the traceback in the log
                failure = internal("HTTP call", path, error)
                call.code = failure.code
                return error_response(failure, request_id=call.request_id)
            return web.Response(body=payload, content_type=f"application/{codec}",
                                headers={REQUEST_ID_HEADER: call.request_id})

    @staticmethod
    def _parse(request_class: type[Message], codec: str, body: bytes) -> Message:
        name = request_class.DESCRIPTOR.full_name
        if codec == "proto":
            try:
                return request_class.FromString(body)
            except Exception as error:  # DecodeError, or RuntimeError from some runtimes
                raise invalid(f'request body is not a valid "{name}" message ({error})') from error
        message = request_class()
        try:
            # unknown fields are ignored, as protobuf ignores them on gRPC: a client of an older
            # release may still send an input field that was removed since
            json_format.Parse(body or b"{}", message, ignore_unknown_fields=True)
        except (json_format.ParseError, UnicodeDecodeError, RecursionError) as error:
            raise invalid(f'request body is not a valid "{name}" message in the proto3 JSON mapping ({error})') \
                from error
        return message

    def _encode(self, response: Message, codec: str) -> bytes:
        size = response.ByteSize()
        if size > self.limit:  # what gRPC refuses to send, the JSON side does not send either
            raise Status("RESOURCE_EXHAUSTED", f"the response is {size} bytes, over this server's limit of "
                                               f"{self.limit} bytes (--max-message-bytes)")
        if codec == "proto":
            return response.SerializeToString()  # type: ignore[no-any-return]
        return _json(json_format.MessageToDict(response))

    # -- GET: health and pages ---------------------------------------------------------------

    async def _get(self, request: web.Request) -> web.Response:
        path = request.path
        if path == "/healthz":
            return web.Response(text="ok\n")
        if path == "/readyz":
            health = self.server.health
            ready = health is not None and health.statuses.get(OVERALL) == SERVING
            return web.Response(status=200 if ready else 503, text="SERVING\n" if ready else "NOT_SERVING\n")
        if not self._page_allowed(request):
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="protoreg", charset="UTF-8"'},
                                text="this server needs its bearer token: send `Authorization: Bearer <token>`, or "
                                     "sign in with any user name and the token as the password\n")
        if path in self.server.unary or (self.server.router is not None and path in self.server.router.handlers):
            return web.Response(status=405, headers={"Allow": "POST"},
                                text=f"{path} is a method: call it with POST (Connect's unary protocol)\n")
        files = await self._rendered()
        relative = path.lstrip("/")
        if not relative or relative.endswith("/"):
            relative += "index.html"
        content = files.get(relative)
        if content is None:
            return web.Response(status=404, text=f"no page {path[:256]} here; the browser starts at /\n")
        return web.Response(body=content, content_type=PAGE_TYPES.get(PurePosixPath(relative).suffix, "text/plain"),
                            charset="utf-8")

    def _page_allowed(self, request: web.Request) -> bool:
        """With a token, pages need it too: as a bearer token, or (browsers) as a Basic password."""
        tokens = self.server.tokens
        if tokens is None:
            return True
        metadata = _metadata(request)
        if tokens.authorized(metadata):
            return True
        values = [value for key, value in metadata if key == AUTHORIZATION]
        if len(values) != 1 or not values[0][:6].lower() == "basic ":
            return False
        try:
            credentials = base64.b64decode(values[0][6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        _, sep, password = credentials.partition(b":")
        return bool(sep) and tokens.matches(password)

    def _served(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((m.name, m.version) for m in self.server.served.values()))

    async def _rendered(self) -> dict[str, bytes]:
        """The pages for what is served now, rendered again (off the loop) after a reload."""
        served = self._served()
        if self._pages is None or self._pages[0] != served:
            files = await asyncio.get_running_loop().run_in_executor(None, self._render, served)
            self._pages = (served, files)
        return self._pages[1]

    def _render(self, served: tuple[tuple[str, str], ...]) -> dict[str, bytes]:
        from protoreg.registry.site.pages import render_served, render_site

        if self.site_data is not None:
            versions: dict[str, list[str]] = {}
            for name, version in served:
                versions.setdefault(name, []).append(version)
            return render_site(self.site_data, try_it_base="./", served=versions)
        return render_served(self._lines())

    def _lines(self) -> list[Mapping[str, Any]]:
        """What the page without ``--site`` shows of each served line."""
        lines: list[Mapping[str, Any]] = []
        for model in sorted(self.server.served.values(), key=lambda m: (m.name, m.major)):
            path = f"{model.service_name}/{PREDICT_METHOD}"
            lines.append({
                "model": model.name, "display_name": model.display_name, "description": model.description,
                "version": model.version, "major": model.major, "package": model.release.package, "path": path,
                "example": json.dumps(example_request(model.codec.request_class), indent=2),
            })
        return lines
