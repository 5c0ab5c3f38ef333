"""Bearer-token access: ``--auth-token-file`` of ``protoreg serve`` and ``protoreg predict``.

The server side is a gRPC server interceptor. Every call must carry the metadata
``authorization: Bearer <token>`` with the token from the file, compared in constant time
(:func:`hmac.compare_digest`); any other call is answered ``UNAUTHENTICATED`` before a handler
runs, so reflection, the registry service and unknown methods are protected as well as the
models. The standard health service (``grpc.health.v1.Health``) is exempt: load balancers and
orchestrators probe it without credentials, and it reveals nothing but serving status.

The client side is a channel interceptor that adds the header to every call, reflection included.
"""

from __future__ import annotations

import hmac
import logging
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import grpc

from protoreg.registry.errors import UsageError

log = logging.getLogger("protoreg.service")

HEALTH_METHOD_PREFIX = "/grpc.health.v1.Health/"
AUTHORIZATION = "authorization"
_SCHEME = b"bearer "
# RFC 6750 allows a narrower set; any visible ASCII is accepted so existing secrets fit, but no
# whitespace, since a token must survive being a header value.
_TOKEN = re.compile(r"[\x21-\x7e]+")


class AuthTokenError(UsageError):
    """The auth token file is missing, empty, unreadable or holds something that is not a token."""


def read_token(path: Path) -> str:
    """The one token held by ``path`` (surrounding whitespace, such as the final newline, ignored)."""
    fix = f"write one token into it, for example with `openssl rand -hex 32 > {path}`"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AuthTokenError(f"auth token file {path} does not exist; {fix}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise AuthTokenError(f"cannot read auth token file {path} ({error}); {fix}") from error
    token = text.strip()
    if not token:
        raise AuthTokenError(f"auth token file {path} is empty; {fix}")
    if not _TOKEN.fullmatch(token):
        raise AuthTokenError(
            f"auth token file {path} must hold one token of visible ASCII characters, without spaces "
            f"or line breaks inside it; {fix}"
        )
    if path.stat().st_mode & stat.S_IROTH:
        # a warning, not a refusal: Kubernetes mounts secrets 0644 by default
        log.warning("auth token file %s is readable by every user of this machine; chmod 600 it", path)
    return token


def authorization_header(token: str) -> tuple[str, str]:
    """The metadata pair a client sends."""
    return (AUTHORIZATION, f"Bearer {token}")


# -- server ------------------------------------------------------------------------------------


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def _deny(_request: Any, context: grpc.ServicerContext) -> Any:
    context.abort(
        grpc.StatusCode.UNAUTHENTICATED,
        "this server needs a bearer token: send the metadata `authorization: Bearer <token>` "
        "(protoreg predict --auth-token-file PATH)",
    )


def _denial(handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that answers UNAUTHENTICATED without reading."""
    if handler is None or handler.request_streaming:
        if handler is not None and not handler.response_streaming:
            return grpc.stream_unary_rpc_method_handler(_deny)
        return grpc.stream_stream_rpc_method_handler(_deny)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(_deny)
    return grpc.unary_unary_rpc_method_handler(_deny)


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Answers UNAUTHENTICATED unless the call carries ``authorization: Bearer <token>``."""

    def __init__(self, token: str) -> None:
        self._token = token.encode("ascii")

    def authorized(self, metadata: Any) -> bool:
        values = [_as_bytes(value) for key, value in (metadata or ()) if key == AUTHORIZATION]
        if len(values) != 1 or values[0][: len(_SCHEME)].lower() != _SCHEME:
            return False
        return hmac.compare_digest(values[0][len(_SCHEME):].strip(), self._token)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        if method.startswith(HEALTH_METHOD_PREFIX) or self.authorized(
            handler_call_details.invocation_metadata
        ):
            return continuation(handler_call_details)
        # unknown methods are denied too, so a caller without the token cannot probe what exists
        return _denial(continuation(handler_call_details))


# -- client ------------------------------------------------------------------------------------


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class BearerTokenClientInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``authorization: Bearer <token>`` to every call of a channel."""

    def __init__(self, token: str) -> None:
        self._header = authorization_header(token)

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [*(details.metadata or ()), self._header]
        return _CallDetails(
            details.method, details.timeout, metadata, details.credentials,
            getattr(details, "wait_for_ready", None), getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Iterator[Any]
    ) -> Any:
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Iterator[Any]
    ) -> Any:
        return continuation(self._details(client_call_details), request_iterator)


def with_token(channel: grpc.Channel, token: str | None) -> grpc.Channel:
    """``channel``, sending the bearer token on every call when there is one."""
    if token is None:
        return channel
    return grpc.intercept_channel(channel, BearerTokenClientInterceptor(token))
