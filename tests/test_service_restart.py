"""A server killed mid-call: the caller gets UNAVAILABLE (not a hang), and a restart serves again.

``protoreg serve`` runs as a subprocess and is killed with SIGKILL (no graceful shutdown) while a
call is inside the model; the call has a deadline, so a client that never heard back would fail
with DEADLINE_EXCEEDED instead of hanging the test. Then ``protoreg serve`` starts again on the
same port, and both the old channel (which reconnects by itself) and a new one are answered.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from protoreg.service.compile import load_protos
from tests.service_support import EchoModel, register_models, start_serve, stop_process

ECHO = "/echo_model.v1.EchoModelService"
REF = "tests.service_support:EchoModel"
DEADLINE = 60.0  # far beyond what any step needs; only there so nothing can hang


def _restart(protos: Path, address: str) -> Any:
    """``protoreg serve`` again on ``address``; a few tries, in case the port is briefly busy."""
    for attempt in range(5):
        try:
            process, bound = start_serve(protos, [REF], address=address)
        except AssertionError:
            if attempt == 4:
                raise
            time.sleep(0.5)
            continue
        assert bound == address
        return process
    raise AssertionError("unreachable")


def _wait_for(marker: Path, done: Any) -> None:
    """Until the model has started the call (bounded: 1200 polls of 50 ms)."""
    for _ in range(1200):
        if marker.exists():
            return
        assert not done(), "the call ended before the model started it"
        time.sleep(0.05)
    raise AssertionError("the model never started the call")


@pytest.mark.parametrize("kind", ["unary", "stream"])
def test_a_call_in_flight_when_the_server_is_killed_is_unavailable_and_a_restart_serves_again(
    tmp_path: Path, kind: str
) -> None:
    protos = register_models(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "protos", [EchoModel])
    tree = load_protos(protos)
    request_cls = tree.message_class("echo_model.v1.PredictRequest")
    response_cls = tree.message_class("echo_model.v1.PredictResponse")
    marker = tmp_path / "started"
    slow = request_cls(name="in flight", sleep=30.0, started_marker=str(marker))
    processes = []
    process, address = start_serve(protos, [REF])
    processes.append(process)
    channel = grpc.insecure_channel(address)
    try:
        if kind == "unary":
            future = channel.unary_unary(f"{ECHO}/Predict").future(slow.SerializeToString(), timeout=DEADLINE)
            _wait_for(marker, future.done)
            process.kill()
            process.wait()
            error = future.exception(timeout=DEADLINE)
        else:
            items: queue.Queue[bytes | None] = queue.Queue()

            def requests() -> Iterator[bytes]:
                while (item := items.get(timeout=DEADLINE)) is not None:
                    yield item

            wrap = tree.message_class("echo_model.v1.PredictStreamRequest")
            stream = channel.stream_stream(f"{ECHO}/PredictStream")(requests(), timeout=DEADLINE)
            items.put(wrap(request=request_cls(name="first")).SerializeToString())
            first = next(stream)
            assert first  # the stream is open and answering
            items.put(wrap(request=slow).SerializeToString())
            _wait_for(marker, stream.done)
            process.kill()
            process.wait()
            with pytest.raises(grpc.RpcError) as caught:
                next(stream)
            items.put(None)
            error = caught.value
        assert isinstance(error, grpc.RpcError)
        assert error.code() == grpc.StatusCode.UNAVAILABLE, (error.code(), error.details())

        processes.append(_restart(protos, address))
        again = request_cls(name="after restart").SerializeToString()
        # the old channel reconnects by itself; wait_for_ready rides out its reconnect backoff
        data = channel.unary_unary(f"{ECHO}/Predict")(again, timeout=DEADLINE, wait_for_ready=True)
        assert response_cls.FromString(data).name == "after restart"
        with grpc.insecure_channel(address) as fresh:
            data = fresh.unary_unary(f"{ECHO}/Predict")(again, timeout=DEADLINE)
        assert response_cls.FromString(data).name == "after restart"
    finally:
        channel.close()
        for started in processes:
            stop_process(started)
