"""Unary methods as every transport calls them: a request message in, a response message out.

gRPC (``service/server.py``) and the Connect protocol over HTTP (``service/http.py``) call a
model's ``Predict`` and the registry service's methods through the same :class:`UnaryMethod`:
the transport decodes the request its own way (protobuf bytes, or the proto3 JSON mapping), awaits
:attr:`UnaryMethod.call` and encodes the answer; a failure is a
:class:`~protoreg.service.status.Status`, which each transport sends its own way. Validation, the
model call and the status of every failure are therefore one code path.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message


@dataclass(frozen=True)
class UnaryMethod:
    """One unary method: its request class and what answers it (raising ``Status``)."""

    request: type[Message]
    call: Callable[[Message, float | None], Awaitable[Message]]  # (request, deadline) -> response
    model: tuple[str, str] = ("", "")  # (model, version) for the telemetry; empty for the registry service
    # told each decoded request and the client's peer before the call (deprecated fields it sets)
    notice: Callable[[Message, str], None] | None = None


def deadline_of(context: Any) -> float | None:
    """A gRPC call's deadline on the ``time.monotonic()`` clock (None without one), as
    :attr:`UnaryMethod.call` takes it."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining
