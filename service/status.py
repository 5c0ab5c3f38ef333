"""How a call ends when it does not end OK: one exception for every handler, one way to send it.

A handler raises :class:`Status` (a gRPC status code name, one sentence, and the
``google.rpc.BadRequest`` field violations or the request id when there are any); the server sends
it with :func:`abort`. ``INVALID_ARGUMENT`` carries its violations as ``google.rpc.Status``
details, cut to what fits in a client's trailers (``service/limits.py``). Every call's request id
is in the trailing metadata ``x-request-id`` (``service/telemetry.py``); ``INTERNAL`` repeats it
as ``request-id`` and in its message, and the traceback is logged under the same id. The code
names are gRPC's, which every transport maps.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from .convert import Violation
from .limits import bounded_status
from .telemetry import CURRENT, REQUEST_ID, record_code

log = logging.getLogger("protoreg.service")


class Status(Exception):
    """A call's end other than OK."""

    def __init__(self, code: str, message: str, violations: Sequence[Violation] = (),
                 request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.violations = tuple(violations)
        self.request_id = request_id


def internal(what: str, subject: str, error: BaseException | None = None) -> Status:
    """INTERNAL with the call's request id (or a fresh one); the traceback (of ``error``, or of
    the exception being handled) is logged under that id."""
    call = CURRENT.get()
    request_id = call.request_id if call is not None else uuid.uuid4().hex
    log.error("request %s: %s of %s failed", request_id, what, subject,
              exc_info=(type(error), error, error.__traceback__) if error is not None else True,
              extra={"request_id": request_id})
    return Status(
        "INTERNAL",
        f"{subject} failed on this request (request id {request_id}); the server log has the details",
        request_id=request_id,
    )


def invalid(message: str, violations: Sequence[Violation] = ()) -> Status:
    return Status("INVALID_ARGUMENT", message, violations)


def undecodable(method: str, error: Exception) -> Status:
    """INVALID_ARGUMENT for request bytes of ``method`` (its path) that do not parse."""
    return invalid(f"request bytes are not a valid request of {method} ({error})")


def bad_request(status: Status) -> tuple[str, error_details_pb2.BadRequest | None]:
    """The message and ``google.rpc.BadRequest`` an ``INVALID_ARGUMENT`` status is sent with, cut to
    what fits in a client's trailers (``service/limits.py``); every transport sends these."""
    message, violations = bounded_status(status.message, status.violations)
    if not violations:
        return message, None
    return message, error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in violations
        ]
    )


async def abort(context: grpc.aio.ServicerContext, status: Status) -> None:
    """End the call with ``status`` (raises, as ``context.abort`` does)."""
    record_code(status.code)
    code = getattr(grpc.StatusCode, status.code)
    call = CURRENT.get()
    trailers: tuple[tuple[str, str], ...] = ((REQUEST_ID, call.request_id),) if call is not None else ()
    if status.code == "INVALID_ARGUMENT":
        message, detail = bad_request(status)
        proto = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=message)
        if detail is not None:
            proto.details.add().Pack(detail)
        rich = rpc_status.to_status(proto)
        await context.abort(rich.code, rich.details, (*rich.trailing_metadata, *trailers))
    if status.request_id:
        trailers += (("request-id", status.request_id),)
    await context.abort(code, status.message, trailers)
