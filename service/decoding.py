"""Undecodable requests to handlers with a deserializer are ``INVALID_ARGUMENT``, not ``INTERNAL``.

protoreg's own handlers take raw bytes and parse them themselves, but the standard services
(health, reflection) are registered with generated deserializers, and gRPC answers a request its
deserializer refuses with ``INTERNAL: Exception deserializing request!``: a client's mistake
reported as a server bug. This server interceptor takes the deserializer out of such handlers and
runs it inside the call instead, where a failure can be answered ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc


def _parser(method: str, deserialize: Callable[[bytes], Any]) -> Callable[[bytes, grpc.ServicerContext], Any]:
    def parse(raw: bytes, context: grpc.ServicerContext) -> Any:
        try:
            return deserialize(raw)
        except Exception as error:  # DecodeError, or whatever a deserializer raises on bad bytes
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"request bytes are not a valid request of {method} ({error})"
            )

    return parse


def guard_handler(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """``handler`` reading raw bytes and deserializing them itself, answering INVALID_ARGUMENT."""
    parse = _parser(method, handler.request_deserializer)
    serializer = handler.response_serializer

    def each(raws: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[Any]:
        for raw in raws:
            yield parse(raw, context)

    if handler.unary_unary is not None:
        unary_unary = handler.unary_unary
        return grpc.unary_unary_rpc_method_handler(
            lambda raw, context: unary_unary(parse(raw, context), context), response_serializer=serializer
        )
    if handler.unary_stream is not None:
        unary_stream = handler.unary_stream
        return grpc.unary_stream_rpc_method_handler(
            lambda raw, context: unary_stream(parse(raw, context), context), response_serializer=serializer
        )
    if handler.stream_unary is not None:
        stream_unary = handler.stream_unary
        return grpc.stream_unary_rpc_method_handler(
            lambda raws, context: stream_unary(each(raws, context), context), response_serializer=serializer
        )
    stream_stream = handler.stream_stream
    return grpc.stream_stream_rpc_method_handler(
        lambda raws, context: stream_stream(each(raws, context), context), response_serializer=serializer
    )


class DecodeGuardInterceptor(grpc.ServerInterceptor):
    """Wraps every handler that has a request deserializer with :func:`guard_handler`."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        return guard_handler(handler_call_details.method, handler)
