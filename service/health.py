"""``grpc.health.v1.Health``: ``Check``, ``Watch`` and ``List``, on the event loop.

grpcio-health-checking's servicers do not answer ``List`` (reflection advertises it all the same)
and cannot tell a caller with the bearer token from one without, so the server has its own, on
the standard messages. Statuses are kept for the overall server (``""``) and every served
service; ``Watch`` sends the current status, then every change.

Health needs no bearer token, for load balancers and orchestrators; with ``--auth-token-file``, a
caller without the token learns only whether the server as a whole serves: ``Check`` and
``Watch`` of the overall status (``service=""``, what a Kubernetes gRPC probe asks) answer, while
``Check``/``Watch`` of a named service and ``List`` are ``UNAUTHENTICATED``, so the served
models cannot be enumerated without the token.

Open ``Watch`` streams are capped (``--max-streams``/8): they cost no thread here, but they are
open to anyone, so one more is ``RESOURCE_EXHAUSTED``. Once shutdown begins every status turns
``NOT_SERVING`` and the ``Watch`` streams end after sending it, so they do not hold the server
for its grace period.

All of it runs on the server's event loop; :meth:`HealthServicer.set` must be called there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
from grpc_health.v1 import health_pb2

from .limits import Slots
from .status import Status, abort, undecodable

SERVICE = "grpc.health.v1.Health"
OVERALL = ""
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthServicer:
    """The health statuses of the server and its services, and the three methods that read them."""

    def __init__(self, watchers: Slots, authorized: Callable[[grpc.aio.ServicerContext], bool] | None = None) -> None:
        self.statuses: dict[str, int] = {OVERALL: NOT_SERVING}
        self.watchers = watchers
        self._authorized = authorized
        self._changed = asyncio.Condition()
        self._version = 0  # bumped on every change, so a watcher cannot miss one
        self.shutting_down = False

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        return {
            f"/{SERVICE}/Check": grpc.unary_unary_rpc_method_handler(self.check),
            f"/{SERVICE}/Watch": grpc.unary_stream_rpc_method_handler(self.watch),
            f"/{SERVICE}/List": grpc.unary_unary_rpc_method_handler(self.list),
        }

    async def set(self, service: str, status: int) -> None:
        """Set a status (ignored once shutdown began) and tell the watchers."""
        if self.shutting_down or self.statuses.get(service) == status:
            return
        self.statuses[service] = status
        await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._version += 1
            self._changed.notify_all()

    async def shut_down(self, wait: float = 1.0) -> None:
        """Every status NOT_SERVING for good; the watchers get it, then their streams end.

        Waits (at most ``wait`` seconds) until every Watch stream has sent it and ended, so that
        the server's own shutdown does not cut a stream before its last answer.
        """
        self.shutting_down = True
        for service in self.statuses:
            self.statuses[service] = NOT_SERVING
        await self._notify()
        deadline = asyncio.get_running_loop().time() + wait
        while self.watchers.open and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)

    async def _request(self, raw: bytes, context: grpc.aio.ServicerContext, method: str) -> str:
        try:
            service = health_pb2.HealthCheckRequest.FromString(raw).service
        except Exception as error:
            await abort(context, undecodable(f"/{SERVICE}/{method}", error))
        if service != OVERALL:
            await self._require_token(context, "the health of a named service")
        return service

    async def _require_token(self, context: grpc.aio.ServicerContext, what: str) -> None:
        if self._authorized is not None and not self._authorized(context):
            await abort(context, Status(
                "UNAUTHENTICATED",
                f'{what} needs the bearer token; without it only the overall status (service "") answers',
            ))

    async def check(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        service = await self._request(raw, context, "Check")
        status = self.statuses.get(service)
        if status is None:
            await abort(context, Status("NOT_FOUND", f'no health status for service "{service[:128]}"'))
        return health_pb2.HealthCheckResponse(status=status).SerializeToString()

    async def watch(self, raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        service = await self._request(raw, context, "Watch")
        if not self.watchers.acquire():
            await abort(context, Status(
                "RESOURCE_EXHAUSTED",
                f"too many open health Watch streams (at most {self.watchers.limit}); poll with Check instead",
            ))
        try:
            sent = None
            while True:
                seen = self._version
                status = self.statuses.get(service, SERVICE_UNKNOWN)
                if status != sent:
                    yield health_pb2.HealthCheckResponse(status=status).SerializeToString()
                    sent = status
                    continue  # the status may have changed while the answer was sent
                if self.shutting_down:
                    return
                async with self._changed:
                    await self._changed.wait_for(lambda seen=seen: self._version != seen)  # type: ignore[misc]
        finally:
            self.watchers.release()

    async def list(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            health_pb2.HealthListRequest.FromString(raw)
        except Exception as error:
            await abort(context, undecodable(f"/{SERVICE}/List", error))
        await self._require_token(context, "listing the served services")
        statuses = {
            name: health_pb2.HealthCheckResponse(status=status) for name, status in sorted(self.statuses.items())
        }
        return health_pb2.HealthListResponse(statuses=statuses).SerializeToString()
