"""Load and soak: 64 clients against one ``protoreg serve`` for a minute, misbehaving on purpose.

The server runs as a subprocess, so its threads and resident memory (``/proc/<pid>/status``) are
its own. 64 client threads, each with its own channel, call it in a loop for ``SOAK_SECONDS``
(``PROTOREG_SOAK_SECONDS``, 60 by default, which is what CI runs) with a mix of valid unary and
streaming calls, invalid ones (missing fields, garbage bytes, unknown enum numbers, oversized
messages, a bad stream item), calls cancelled mid-flight (unary, streaming, health watches),
calls whose deadline passes inside the model, and registry, health and reflection calls. Every
kind has the statuses it may end with, and any other is a failure. The same load first runs for
a warm-up, so the worker pool and allocator have grown; then:

- every call ended with an expected status;
- once the load stops, the server's thread count comes back to its post-warm-up baseline (a
  small tolerance for gRPC's own threads);
- its resident memory grew by less than 10% from the warm-up to the end;
- it still answers, and SIGTERM stops it cleanly.

The duration is a load shape, not a timing assertion; every call has a deadline and every loop a
bound, so the test stops by itself. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from protoreg.service.compile import ProtoTree, load_protos
from tests.service_support import EchoModel, raw_call, register_models, start_serve, stop_process

SOAK_SECONDS = float(os.environ.get("PROTOREG_SOAK_SECONDS", "60"))
WARMUP_SECONDS = max(5.0, SOAK_SECONDS / 6)
CLIENTS = 64
WORKERS = 16
MAX_MESSAGE_BYTES = 256 * 1024
THREAD_TOLERANCE = 4  # gRPC's own threads come and go a little
RSS_GROWTH_LIMIT = 0.10
CALL_DEADLINE = 30.0  # generous; only so that nothing can hang
MAX_ITERATIONS = 1_000_000  # per client: a bound besides the clock
ECHO = "/echo_model.v1.EchoModelService"
C = grpc.StatusCode


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line)


def threads_of(pid: int) -> int:
    return int(proc_status(pid)["Threads"].strip())


def rss_kib(pid: int) -> int:
    return int(proc_status(pid)["VmRSS"].split()[0])


def settled_threads(pid: int, at_most: int | None = None) -> int:
    """The thread count once it stops changing (and, if given, is at most ``at_most``); bounded."""
    last, stable = threads_of(pid), 0
    for _ in range(300):  # 30 s at most
        time.sleep(0.1)
        now = threads_of(pid)
        stable = stable + 1 if now == last else 0
        last = now
        if stable >= 10 and (at_most is None or now <= at_most):
            break
    return last


# -- the kinds of call ---------------------------------------------------------------------------


@dataclass
class Calls:
    """What one client needs to make every kind of call."""

    tree: ProtoTree
    channel: grpc.Channel

    def request(self, **fields: Any) -> bytes:
        return self.tree.message_class("echo_model.v1.PredictRequest")(**fields).SerializeToString()  # type: ignore[no-any-return]

    def stream_items(self, names: list[str | None]) -> list[bytes]:
        wrap = self.tree.message_class("echo_model.v1.PredictStreamRequest")
        request = self.tree.message_class("echo_model.v1.PredictRequest")
        return [
            wrap(request=request(name=n) if n is not None else request(count=1)).SerializeToString()
            for n in names
        ]


def _unary(calls: Calls, path: str, payload: bytes, timeout: float = CALL_DEADLINE) -> grpc.StatusCode:
    try:
        raw_call(calls.channel, path, payload, timeout=timeout)
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return]
    return C.OK


def unary_ok(calls: Calls) -> grpc.StatusCode:
    data = raw_call(calls.channel, f"{ECHO}/Predict", calls.request(name="soak", count=3), timeout=CALL_DEADLINE)
    response = calls.tree.message_class("echo_model.v1.PredictResponse").FromString(data)
    assert response.name == "soak" and response.count == 3  # type: ignore[attr-defined]
    return C.OK


def unary_missing_field(calls: Calls) -> grpc.StatusCode:
    return _unary(calls, f"{ECHO}/Predict", calls.request(count=1))


def unary_garbage(calls: Calls) -> grpc.StatusCode:
    return _unary(calls, f"{ECHO}/Predict", b"\xff\xff\xff\x00garbage")


def unary_unknown_enum(calls: Calls) -> grpc.StatusCode:
    return _unary(calls, f"{ECHO}/Predict", calls.request(name="n", color=4242))


def unary_oversized(calls: Calls) -> grpc.StatusCode:
    return _unary(calls, f"{ECHO}/Predict", calls.request(name="x" * (MAX_MESSAGE_BYTES + 1024)))


def short_deadline(calls: Calls) -> grpc.StatusCode:
    """The model sleeps past the deadline."""
    return _unary(calls, f"{ECHO}/Predict", calls.request(name="late", sleep=0.1), timeout=0.01)


def unary_cancelled(calls: Calls) -> grpc.StatusCode:
    future = calls.channel.unary_unary(f"{ECHO}/Predict").future(
        calls.request(name="cancel me", sleep=0.05), timeout=CALL_DEADLINE
    )
    time.sleep(0.005)
    future.cancel()
    return future.code()  # type: ignore[no-any-return]


def stream_ok(calls: Calls) -> grpc.StatusCode:
    names = [f"item-{i}" for i in range(5)]
    call = calls.channel.stream_stream(f"{ECHO}/PredictStream")
    response = calls.tree.message_class("echo_model.v1.PredictStreamResponse")
    answers = [response.FromString(d).response.name for d in call(iter(calls.stream_items(list(names))),  # type: ignore[attr-defined]
                                                                    timeout=CALL_DEADLINE)]
    assert answers == names
    return C.OK


def stream_invalid_item(calls: Calls) -> grpc.StatusCode:
    call = calls.channel.stream_stream(f"{ECHO}/PredictStream")
    try:
        list(call(iter(calls.stream_items(["a", None, "c"])), timeout=CALL_DEADLINE))
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return]
    return C.OK


def stream_cancelled(calls: Calls) -> grpc.StatusCode:
    """One answer, then the client cancels while the stream is still open."""
    hold = threading.Event()
    (first,) = calls.stream_items(["a"])

    def items() -> Iterator[bytes]:
        yield first
        hold.wait(CALL_DEADLINE)  # keep the stream open until the cancel (bounded)

    stream = calls.channel.stream_stream(f"{ECHO}/PredictStream")(items(), timeout=CALL_DEADLINE)
    next(stream)
    stream.cancel()
    hold.set()
    return stream.code()  # type: ignore[no-any-return]


def watch_cancelled(calls: Calls) -> grpc.StatusCode:
    watch = calls.channel.unary_stream("/grpc.health.v1.Health/Watch")(b"", timeout=CALL_DEADLINE)
    try:
        first = health_pb2.HealthCheckResponse.FromString(next(watch))
    except grpc.RpcError as error:  # the server caps open Watch streams at workers / 4
        return error.code()  # type: ignore[no-any-return]
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()
    return watch.code()  # type: ignore[no-any-return]


def health_check(calls: Calls) -> grpc.StatusCode:
    return _unary(calls, "/grpc.health.v1.Health/Check", b"")


def registry_list(calls: Calls) -> grpc.StatusCode:
    return _unary(calls, "/protoreg.registry.v1.RegistryService/ListModels", b"")


def registry_unknown(calls: Calls) -> grpc.StatusCode:
    request = calls.tree.message_class("protoreg.registry.v1.GetProtoRequest")(model="nope_model")
    return _unary(calls, "/protoreg.registry.v1.RegistryService/GetProto", request.SerializeToString())


def reflection(calls: Calls) -> grpc.StatusCode:
    call = calls.channel.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
    request = reflection_pb2.ServerReflectionRequest(list_services="").SerializeToString()
    (answer,) = list(call(iter([request]), timeout=CALL_DEADLINE))
    assert reflection_pb2.ServerReflectionResponse.FromString(answer).list_services_response.service
    return C.OK


# kind: (call, weight, the statuses it may end with)
KINDS: dict[str, tuple[Callable[[Calls], grpc.StatusCode], float, set[grpc.StatusCode]]] = {
    "unary_ok": (unary_ok, 6, {C.OK}),
    "unary_missing_field": (unary_missing_field, 1, {C.INVALID_ARGUMENT}),
    "unary_garbage": (unary_garbage, 1, {C.INVALID_ARGUMENT}),
    "unary_unknown_enum": (unary_unknown_enum, 1, {C.INVALID_ARGUMENT}),
    "unary_oversized": (unary_oversized, 0.2, {C.RESOURCE_EXHAUSTED}),
    # OK: under this load the client's deadline timer can fire after the answer has arrived
    "short_deadline": (short_deadline, 1, {C.DEADLINE_EXCEEDED, C.OK}),
    "unary_cancelled": (unary_cancelled, 1, {C.CANCELLED, C.OK}),  # OK: it finished before the cancel
    "stream_ok": (stream_ok, 3, {C.OK}),
    "stream_invalid_item": (stream_invalid_item, 1, {C.INVALID_ARGUMENT}),
    "stream_cancelled": (stream_cancelled, 1, {C.CANCELLED}),
    # RESOURCE_EXHAUSTED: more Watch streams open at once than the cap (workers / 4)
    "watch_cancelled": (watch_cancelled, 0.5, {C.CANCELLED, C.RESOURCE_EXHAUSTED}),
    "health_check": (health_check, 1, {C.OK}),
    "registry_list": (registry_list, 1, {C.OK}),
    "registry_unknown": (registry_unknown, 1, {C.NOT_FOUND}),
    "reflection": (reflection, 0.5, {C.OK}),
}


@dataclass
class Tally:
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, code: grpc.StatusCode | str, detail: str = "") -> None:
        name = code if isinstance(code, str) else code.name
        with self.lock:
            self.counts[(kind, name)] += 1
            if (isinstance(code, str) or code not in KINDS[kind][2]) and len(self.unexpected) < 20:
                self.unexpected.append(f"{kind}: {name} {detail}")

    def per_kind(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for (kind, _), n in self.counts.items():
            totals[kind] += n
        return dict(sorted(totals.items()))


def drive(clients: list[Calls], seconds: float, tally: Tally, seed: int) -> None:
    """Every client calls in a loop until ``seconds`` have passed (or MAX_ITERATIONS)."""
    names = list(KINDS)
    weights = [KINDS[k][1] for k in names]
    end = time.monotonic() + seconds

    def client(index: int, calls: Calls) -> None:
        rng = random.Random(seed * 1000 + index)
        for _ in range(MAX_ITERATIONS):
            if time.monotonic() >= end:
                return
            kind = rng.choices(names, weights)[0]
            try:
                tally.add(kind, KINDS[kind][0](calls))
            except grpc.RpcError as error:  # a call that should have worked did not
                tally.add(kind, error.code(), error.details() or "")
            except Exception as error:  # a wrong answer
                tally.add(kind, f"{type(error).__name__}", str(error)[:200])

    threads = [threading.Thread(target=client, args=(i, c), daemon=True) for i, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 4 * CALL_DEADLINE)
    assert not any(t.is_alive() for t in threads), "a client did not stop"


@pytest.mark.slow
def test_soak_64_clients_mixed_calls(tmp_path: Path) -> None:
    protos = register_models(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "protos", [EchoModel])
    tree = load_protos(protos)
    process, address = start_serve(
        protos, ["tests.service_support:EchoModel"],
        "--workers", str(WORKERS), "--max-message-bytes", str(MAX_MESSAGE_BYTES), "--grace", "10",
    )
    pid = process.pid
    channels = [grpc.insecure_channel(address) for _ in range(CLIENTS)]
    try:
        clients = [Calls(tree, channel) for channel in channels]
        started_threads = threads_of(pid)

        warmup = Tally()
        drive(clients, WARMUP_SECONDS, warmup, seed=1)
        base_threads = settled_threads(pid)
        base_rss = rss_kib(pid)

        tally = Tally()
        drive(clients, SOAK_SECONDS, tally, seed=2)
        end_threads = settled_threads(pid, at_most=base_threads + THREAD_TOLERANCE)
        end_rss = rss_kib(pid)

        per_kind = tally.per_kind()
        print(  # the numbers, for whoever runs it with -s
            f"\nsoak {SOAK_SECONDS:g}s x {CLIENTS} clients: {sum(per_kind.values())} calls {per_kind}\n"
            f"statuses {dict(sorted(tally.counts.items()))}\n"
            f"server threads: at start {started_threads}, after warm-up {base_threads}, at the end {end_threads}\n"
            f"server RSS: after warm-up {base_rss} KiB, at the end {end_rss} KiB "
            f"({(end_rss - base_rss) / base_rss:+.1%})"
        )
        assert not warmup.unexpected, warmup.unexpected
        assert not tally.unexpected, tally.unexpected
        assert set(per_kind) == set(KINDS), "every kind of call was made"
        assert end_threads <= base_threads + THREAD_TOLERANCE, (started_threads, base_threads, end_threads)
        assert end_rss < base_rss * (1 + RSS_GROWTH_LIMIT), (base_rss, end_rss)

        for channel in channels:
            channel.close()
        with grpc.insecure_channel(address) as channel:  # still answering
            assert unary_ok(Calls(tree, channel)) == C.OK
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        for channel in channels:
            channel.close()
        stop_process(process)
