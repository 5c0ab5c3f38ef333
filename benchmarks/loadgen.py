"""The load-generating client: one process, asyncio gRPC, every server measured in turn.

It reads a plan (JSON on stdin): targets (name, address, unary method, stream method or none,
request bytes, stream request bytes), concurrencies, rounds, seconds per measurement and warm-up
seconds. For each round, for each concurrency, for each target (and mode, ``unary`` or
``stream``) it keeps ``concurrency`` calls in flight for the given seconds and records every
latency; so every server is measured in every round, interleaved, by the same client. The
result (JSON on stdout) lists each measurement: completed calls, errors, throughput, p50, p99.

A stream measurement opens ``concurrency`` ``PredictStream`` calls and sends one request at a
time on each, waiting for its answer (the same number of requests in flight as unary).

A target may ask for several ``channels`` (default 1): the callers are spread over that many
channels, each its own TCP connection, as many separate clients would be (``--processes`` spreads
connections, not calls, over its server processes).

A plan may instead be a ``soak`` (one target, one concurrency, one long measurement): the same
measurement, with every error status counted by name.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import grpc

from .stats import percentile


def _identity(data: bytes) -> bytes:
    return data


async def _unary_worker(call: Any, request: bytes, until: float, latencies: list[float], errors: list[str]) -> None:
    clock = time.perf_counter
    while clock() < until:
        start = clock()
        try:
            await call(request, timeout=10)
        except grpc.aio.AioRpcError as error:
            errors.append(error.code().name)
            continue
        latencies.append(clock() - start)


async def _stream_worker(
    method: Any, request: bytes, until: float, latencies: list[float], errors: list[str]
) -> None:
    clock = time.perf_counter
    call = method(timeout=600)
    try:
        while clock() < until:
            start = clock()
            await call.write(request)
            answer = await call.read()
            if answer is grpc.aio.EOF:
                errors.append("EOF")
                return
            latencies.append(clock() - start)
        await call.done_writing()
        while await call.read() is not grpc.aio.EOF:
            pass
    except grpc.aio.AioRpcError as error:
        errors.append(error.code().name)


async def _measure(channels: list[grpc.aio.Channel], target: dict[str, Any], mode: str, concurrency: int,
                   seconds: float, warmup: float) -> dict[str, Any]:
    if mode == "unary":
        methods: list[Any] = [c.unary_unary(target["unary"], request_serializer=_identity,
                                            response_deserializer=_identity) for c in channels]
        request = bytes.fromhex(target["request"])
        worker: Any = _unary_worker
    else:
        methods = [c.stream_stream(target["stream"], request_serializer=_identity,
                                   response_deserializer=_identity) for c in channels]
        request = bytes.fromhex(target["stream_request"])
        worker = _stream_worker
    if warmup > 0:
        await asyncio.gather(*(worker(methods[i % len(methods)], request, time.perf_counter() + warmup, [], [])
                               for i in range(concurrency)))
    latencies: list[float] = []
    errors: list[str] = []
    start = time.perf_counter()
    until = start + seconds
    await asyncio.gather(*(worker(methods[i % len(methods)], request, until, latencies, errors)
                           for i in range(concurrency)))
    elapsed = time.perf_counter() - start
    return {
        "target": target["name"],
        "mode": mode,
        "concurrency": concurrency,
        "calls": len(latencies),
        "errors": len(errors),
        "error_codes": sorted(set(errors)),
        "error_counts": {code: errors.count(code) for code in sorted(set(errors))},
        "seconds": elapsed,
        "throughput": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def _channels(target: dict[str, Any]) -> list[grpc.aio.Channel]:
    # a local subchannel pool: otherwise channels to one address share one connection
    options = [("grpc.use_local_subchannel_pool", 1)]
    return [grpc.aio.insecure_channel(target["address"], options=options) for _ in range(target.get("channels", 1))]


async def run_plan(plan: dict[str, Any]) -> list[dict[str, Any]]:
    channels = {t["name"]: _channels(t) for t in plan["targets"]}
    results: list[dict[str, Any]] = []
    try:
        for round_index in range(plan["rounds"]):
            for concurrency in plan["concurrencies"]:
                for target in plan["targets"]:
                    for mode in target["modes"]:
                        result = await _measure(channels[target["name"]], target, mode, concurrency,
                                                plan["seconds"], plan["warmup"])
                        result["round"] = round_index
                        results.append(result)
    finally:
        for group in channels.values():
            for channel in group:
                await channel.close()
    return results


def main() -> None:
    plan = json.load(sys.stdin)
    json.dump(asyncio.run(run_plan(plan)), sys.stdout)


if __name__ == "__main__":
    main()
