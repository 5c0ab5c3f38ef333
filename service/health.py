"""The health service: gRPC's own servicer, plus the ``List`` method it declares but does not answer.

``grpc.health.v1.Health`` has ``Check``, ``Watch`` and (since 2024) ``List``; grpcio-health-checking
registers all three but its servicer answers ``List`` with ``UNIMPLEMENTED`` (and logs a traceback),
although reflection advertises it. Here ``List`` returns the status of every service the server has
set, the overall server (``""``) included.

Each open ``Watch`` stream holds one worker thread for as long as the client keeps it open (the
servicer runs in blocking mode; its non-blocking mode deadlocks at shutdown), and health is
exempt from the bearer token. So ``Watch`` streams are capped at a quarter of the workers: one
more is answered ``RESOURCE_EXHAUSTED`` at once instead of starving the models of threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2


class ListingHealthServicer(health.HealthServicer):
    """:class:`grpc_health.v1.health.HealthServicer` that also answers ``List``."""

    def __init__(self, *, max_watchers: int = 4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._names: set[str] = {""}  # the parent starts with the overall status set
        self.max_watchers = max_watchers
        self._watch_slots = threading.BoundedSemaphore(max_watchers)

    def Watch(self, request: Any, context: grpc.ServicerContext, *args: Any, **kwargs: Any) -> Iterator[Any]:  # noqa: N802
        if not self._watch_slots.acquire(blocking=False):
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"too many open health Watch streams (at most {self.max_watchers}); poll with Check instead",
            )
        try:
            yield from super().Watch(request, context, *args, **kwargs)
        finally:
            self._watch_slots.release()

    def set(self, service: str, status: Any) -> None:
        self._names.add(service)
        super().set(service, status)

    def List(self, request: Any, context: grpc.ServicerContext) -> health_pb2.HealthListResponse:  # noqa: N802
        statuses = {
            name: super(ListingHealthServicer, self).Check(health_pb2.HealthCheckRequest(service=name), context)
            for name in sorted(self._names)
        }
        return health_pb2.HealthListResponse(statuses=statuses)
