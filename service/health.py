"""The health service: gRPC's own servicer, plus the ``List`` method it declares but does not answer.

``grpc.health.v1.Health`` has ``Check``, ``Watch`` and (since 2024) ``List``; grpcio-health-checking
registers all three but its servicer answers ``List`` with ``UNIMPLEMENTED`` (and logs a traceback),
although reflection advertises it. Here ``List`` returns the status of every service the server has
set, the overall server (``""``) included.
"""

from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2


class ListingHealthServicer(health.HealthServicer):
    """:class:`grpc_health.v1.health.HealthServicer` that also answers ``List``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._names: set[str] = {""}  # the parent starts with the overall status set

    def set(self, service: str, status: Any) -> None:
        self._names.add(service)
        super().set(service, status)

    def List(self, request: Any, context: grpc.ServicerContext) -> health_pb2.HealthListResponse:  # noqa: N802
        statuses = {
            name: super(ListingHealthServicer, self).Check(health_pb2.HealthCheckRequest(service=name), context)
            for name in sorted(self._names)
        }
        return health_pb2.HealthListResponse(statuses=statuses)
