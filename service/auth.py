"""Bearer-token access: ``--auth-token-file`` of ``protoreg serve`` and ``protoreg predict``.

On the server, every call must carry the metadata ``authorization: Bearer <token>`` with the
token from the file, compared in constant time (:func:`hmac.compare_digest`); the server's router
(``service/server.py``) answers any other call ``UNAUTHENTICATED`` before a handler runs, so
reflection, the registry service and unknown methods are protected as well as the models. Health
is exempt, for load balancers and orchestrators, and answers only the overall status without the
token (``service/health.py``).

A token is rotated without a restart: the file is looked at again at most once a second (its
size, modification time and inode) and re-read when it changed, and ``protoreg serve`` re-reads
it at once on SIGHUP. A new file that is not a valid token is logged and the old token stays.

The client side is a channel interceptor that adds the header to every call, reflection included.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import grpc

from protoreg.registry.errors import UsageError

log = logging.getLogger("protoreg.service")

HEALTH_METHOD_PREFIX = "/grpc.health.v1.Health/"
AUTHORIZATION = "authorization"
UNAUTHENTICATED = (
    "this server needs a bearer token: send the metadata `authorization: Bearer <token>` "
    "(protoreg predict --auth-token-file PATH)"
)
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


RECHECK_SECONDS = 1.0  # how often the token file is looked at for a rotation


def _file_key(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)


class TokenSource:
    """The server's bearer token, following its file when the file changes."""

    def __init__(self, token: str, path: Path | None = None) -> None:
        self._token = token.encode("ascii")
        self.path = path
        self._key = _file_key(path) if path is not None else None
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    @classmethod
    def fixed(cls, token: str) -> TokenSource:
        return cls(token)

    @classmethod
    def from_file(cls, path: Path) -> TokenSource:
        return cls(read_token(path), path)

    def reload(self) -> bool:
        """Re-read the file now (SIGHUP); a file that is not a valid token keeps the old token."""
        if self.path is None:
            return False
        with self._lock:
            key = _file_key(self.path)
            try:
                token = read_token(self.path)
            except AuthTokenError as error:
                log.error("kept the current bearer token: %s", error)
                self._key = key  # do not re-read the same bad file every second
                return False
            changed = token.encode("ascii") != self._token
            self._token, self._key = token.encode("ascii"), key
        if changed:
            log.warning("bearer token re-read from %s", self.path)
        return changed

    def token(self) -> bytes:
        """The current token, re-read first when the file changed since the last look."""
        if self.path is not None:
            now = time.monotonic()
            if now - self._checked >= RECHECK_SECONDS:
                self._checked = now
                if _file_key(self.path) != self._key:
                    self.reload()
        return self._token

    def authorized(self, metadata: Any) -> bool:
        """Whether ``metadata`` carries exactly one ``authorization: Bearer <token>``."""
        values = [_as_bytes(value) for key, value in (metadata or ()) if key == AUTHORIZATION]
        if len(values) != 1 or values[0][: len(_SCHEME)].lower() != _SCHEME:
            return False
        return self.matches(values[0][len(_SCHEME):].strip())

    def matches(self, candidate: bytes) -> bool:
        """Whether ``candidate`` is the token (compared in constant time)."""
        return hmac.compare_digest(candidate, self.token())

    def authorized_context(self, context: grpc.ServicerContext) -> bool:
        return self.authorized(context.invocation_metadata())


def authorization_header(token: str) -> tuple[str, str]:
    """The metadata pair a client sends."""
    return (AUTHORIZATION, f"Bearer {token}")


# -- server ------------------------------------------------------------------------------------


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


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
