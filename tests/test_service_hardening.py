"""The server-side defects of the hardening round, each as the behaviour a probe now sees.

Idle streams, stuck models, SIGTERM during a hung model call, health under a bearer token, a
rotated token, an impossible port and a deeply nested request. Servers run on free loopback
ports, in-process or as ``protoreg serve`` subprocesses where signals are the subject.
TLS files are in ``test_service_cli.py`` (next to the certificates the tests make).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from grpc_health.v1 import health_pb2, health_pb2_grpc
from iris_model import IrisModel

from protoreg.cli import main
from protoreg.service.auth import TokenSource
from protoreg.service.compile import ProtoTree, load_protos
from tests.service_support import (
    EchoModel,
    TreeModel,
    raw_call,
    register_models,
    running,
    start_serve,
    stop_process,
    wait_until,
)

WAIT = 30.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
ECHO = "echo_model.v1.EchoModelService"
IRIS = "iris_model.v1.IrisModelService"
REFLECTION = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"


@pytest.fixture(scope="module")
def protos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("hardening")
    return register_models(f"sqlite:///{tmp / 'r.db'}", tmp / "protos", [IrisModel, EchoModel, TreeModel])


@pytest.fixture(scope="module")
def tree(protos: Path) -> ProtoTree:
    return load_protos(protos)


def _iris(tree: ProtoTree) -> bytes:
    cls = tree.message_class("iris_model.v1.PredictRequest")
    return cls(sepal_length=5.1, sepal_width=3.5, petal_length=1.4, petal_width=0.2).SerializeToString()  # type: ignore[no-any-return]


def _echo(tree: ProtoTree, **fields: object) -> bytes:
    return tree.message_class("echo_model.v1.PredictRequest")(**fields).SerializeToString()  # type: ignore[no-any-return]


def _health(channel: grpc.Channel, service: str = "", metadata: tuple[tuple[str, str], ...] = ()) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=WAIT, metadata=metadata).status  # type: ignore[no-any-return]


def _idle(channel: grpc.Channel, path: str, hold: threading.Event) -> grpc.Future:
    """A streaming call that sends nothing until ``hold`` is set."""

    def nothing() -> Iterator[bytes]:
        hold.wait(WAIT)
        return
        yield b""  # a generator that yields nothing

    return channel.stream_stream(path)(nothing(), timeout=WAIT)


# -- 1. idle streams ------------------------------------------------------------------------------


def test_idle_streams_do_not_stop_unary_calls_or_health(tree: ProtoTree) -> None:
    hold = threading.Event()
    with running([IrisModel, EchoModel], tree, workers=1) as (_server, address), \
            grpc.insecure_channel(address) as channel:
        streams = [_idle(channel, f"/{ECHO}/PredictStream", hold) for _ in range(40)]
        streams += [_idle(channel, REFLECTION, hold) for _ in range(40)]
        try:
            for _ in range(5):
                assert _health(channel) == SERVING
                raw_call(channel, f"/{IRIS}/Predict", _iris(tree), timeout=WAIT)
                raw_call(channel, f"/{ECHO}/Predict", _echo(tree, name="x"), timeout=WAIT)
        finally:
            hold.set()
            for stream in streams:
                stream.cancel()


def test_streams_past_max_streams_are_refused_at_once(tree: ProtoTree) -> None:
    hold = threading.Event()
    with running([IrisModel, EchoModel], tree, max_streams=4) as (server, address), \
            grpc.insecure_channel(address) as channel:
        streams = [_idle(channel, f"/{ECHO}/PredictStream", hold) for _ in range(2)]
        streams += [_idle(channel, REFLECTION, hold) for _ in range(2)]
        try:
            # the four have reached the server (a loaded machine may start their handlers late)
            wait_until(lambda: server.open_streams == 4, "four open streams")
            extra = _idle(channel, f"/{ECHO}/PredictStream", hold)
            with pytest.raises(grpc.RpcError) as caught:
                next(extra)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "--max-streams" in (caught.value.details() or "")
            assert _health(channel) == SERVING
            raw_call(channel, f"/{IRIS}/Predict", _iris(tree), timeout=WAIT)
        finally:
            hold.set()
            for stream in streams:
                stream.cancel()


# -- 2. a stuck model ------------------------------------------------------------------------


def test_a_stuck_model_takes_only_its_own_threads(tree: ProtoTree) -> None:
    """Four calls whose model sleeps longer than their deadline: they end at their deadline, the
    model's line stalls after --predict-timeout, and health and the other model keep answering."""
    from protoreg.service.batching import BatchPolicy

    with running([IrisModel, EchoModel], tree, workers=4, batch=BatchPolicy(predict_timeout=1.0)) as (
        _server, address), grpc.insecure_channel(address) as channel:
        sleepers = [channel.unary_unary(f"/{ECHO}/Predict").future(_echo(tree, name="z", sleep=4.0), timeout=2.0)
                    for _ in range(4)]
        assert _health(channel) == SERVING
        raw_call(channel, f"/{IRIS}/Predict", _iris(tree), timeout=WAIT)
        for future in sleepers:
            with pytest.raises(grpc.RpcError) as caught:
                future.result()
            assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        wait_until(lambda: _health(channel, ECHO) == NOT_SERVING, "the echo model reported NOT_SERVING")
        with pytest.raises(grpc.RpcError) as refused:
            raw_call(channel, f"/{ECHO}/Predict", _echo(tree, name="y"), timeout=WAIT)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert _health(channel) == SERVING and _health(channel, IRIS) == SERVING
        raw_call(channel, f"/{IRIS}/Predict", _iris(tree), timeout=WAIT)
        wait_until(lambda: _health(channel, ECHO) == SERVING, "the echo model serving again once it returned")
        raw_call(channel, f"/{ECHO}/Predict", _echo(tree, name="y"), timeout=WAIT)


# -- 3. SIGTERM while a model call hangs -------------------------------------------------------


@pytest.mark.slow
def test_sigterm_exits_within_the_grace_whatever_the_model_does(protos: Path, tree: ProtoTree) -> None:
    process, address = start_serve(protos, ["tests.service_support:EchoModel"], "--grace", "1")
    try:
        marker = protos.parent / "hung-started"
        with grpc.insecure_channel(address) as channel:
            hung = channel.unary_unary(f"/{ECHO}/Predict").future(
                _echo(tree, name="hung", sleep=120.0, started_marker=str(marker)), timeout=WAIT * 4)
            wait_until(marker.exists, "the model call to start")
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)  # far less than the model's 120 s
            elapsed = time.monotonic() - started
            with pytest.raises(grpc.RpcError):
                hung.result()
        assert process.returncode == 0
        assert elapsed < 60
    finally:
        stop_process(process)


# -- 5. and 6. health under a bearer token -------------------------------------------------------


TOKEN = "health-token-1"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


@pytest.fixture(scope="module")
def guarded(tree: ProtoTree) -> Iterator[str]:
    with running([IrisModel], tree, auth_token=TOKEN, workers=1) as (_server, address):
        yield address


def test_without_the_token_health_tells_only_the_overall_status(guarded: str) -> None:
    with grpc.insecure_channel(guarded) as channel:
        assert _health(channel) == SERVING
        for call in (lambda: _health(channel, IRIS), lambda: _health(channel, "nope.v1.NopeService"),
                     lambda: health_pb2_grpc.HealthStub(channel).List(health_pb2.HealthListRequest(), timeout=WAIT)):
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=IRIS), timeout=WAIT)
        with pytest.raises(grpc.RpcError) as caught:
            next(watch)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_with_the_token_health_tells_every_service(guarded: str) -> None:
    with grpc.insecure_channel(guarded) as channel:
        assert _health(channel, IRIS, AUTH) == SERVING
        listing = health_pb2_grpc.HealthStub(channel).List(health_pb2.HealthListRequest(), timeout=WAIT, metadata=AUTH)
        assert IRIS in listing.statuses and "" in listing.statuses


def test_a_tokenless_watch_does_not_block_authorised_calls(guarded: str, tree: ProtoTree) -> None:
    with grpc.insecure_channel(guarded) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=WAIT)
        assert next(watch).status == SERVING
        try:
            channel.unary_unary(f"/{IRIS}/Predict")(_iris(tree), timeout=WAIT, metadata=AUTH)
            assert _health(channel, IRIS, AUTH) == SERVING
        finally:
            watch.cancel()


# -- 8. ports -------------------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["127.0.0.1:99999", "127.0.0.1:-1", "127.0.0.1:http", "127.0.0.1", ":50051"])
def test_an_address_without_a_usable_port_is_refused(tmp_path: Path, address: str) -> None:
    result = CliRunner().invoke(main, ["--protos", str(tmp_path), "serve", "iris_model", "--address", address])
    assert result.exit_code == 2, result.output
    assert f'--address "{address}"' in result.output and "Traceback" not in result.output


# -- 9. a deeply nested request through protoreg predict -----------------------------------------


def _nested(depth: int) -> str:
    node: dict[str, object] = {"value": depth}
    for level in range(depth - 1, -1, -1):
        node = {"value": level, "children": [node]}
    return json.dumps({"name": "deep", "tree": node})


def test_predict_sends_a_100_level_nested_request_the_server_accepts(tree: ProtoTree) -> None:
    with running([TreeModel], tree) as (_server, address):
        result = CliRunner().invoke(main, ["predict", "tree_model", "--address", address, "--json", _nested(99)])
        assert result.exit_code == 0, result.output
        node = json.loads(result.output)["tree"]
        depth = 0
        while node.get("children"):
            node, depth = node["children"][0], depth + 1
        assert depth == 99  # the request, 100 messages deep below the top one, came back whole
        deeper = CliRunner().invoke(main, ["predict", "tree_model", "--address", address, "--json", _nested(100)])
        assert deeper.exit_code == 2 and "too deep" in deeper.output.lower()


# -- 19. a rotated token -------------------------------------------------------------------------


def _code(channel: grpc.Channel, tree: ProtoTree, token: str) -> grpc.StatusCode:
    try:
        channel.unary_unary(f"/{IRIS}/Predict")(_iris(tree), timeout=WAIT,
                                                metadata=(("authorization", f"Bearer {token}"),))
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_a_rotated_token_file_is_followed_without_a_restart(tree: ProtoTree, tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first-token\n")
    path.chmod(0o600)
    with running([IrisModel], tree, auth_token=TokenSource.from_file(path)) as (_server, address), \
            grpc.insecure_channel(address) as channel:
        assert _code(channel, tree, "first-token") == grpc.StatusCode.OK
        path.write_text("the-second-token\n")
        wait_until(lambda: _code(channel, tree, "the-second-token") == grpc.StatusCode.OK, "the new token")
        assert _code(channel, tree, "first-token") == grpc.StatusCode.UNAUTHENTICATED
        path.write_text("\n")  # a broken file: the current token stays, and the log says why
        time.sleep(1.5)
        assert _code(channel, tree, "the-second-token") == grpc.StatusCode.OK


@pytest.mark.slow
def test_sighup_rereads_the_token_at_once(protos: Path, tree: ProtoTree, tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first-token\n")
    path.chmod(0o600)
    process, address = start_serve(protos, ["iris_model"], "--auth-token-file", str(path))
    try:
        with grpc.insecure_channel(address) as channel:
            assert _code(channel, tree, "first-token") == grpc.StatusCode.OK
            # same size and modification time as before, so only the SIGHUP can notice it
            stat = path.stat()
            path.write_text("other-token\n")
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            process.send_signal(signal.SIGHUP)
            wait_until(lambda: _code(channel, tree, "other-token") == grpc.StatusCode.OK, "the token re-read on SIGHUP")
            assert _code(channel, tree, "first-token") == grpc.StatusCode.UNAUTHENTICATED
    finally:
        stop_process(process)


# -- CPU affinity ---------------------------------------------------------------------------------


def _cpus(pid: int) -> set[str]:
    """The CPUs every thread of ``pid`` may run on."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                found.add(line.split(":", 1)[1].strip())
    return found


@pytest.mark.slow
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs a machine with two CPUs or more")
def test_cpu_affinity_pins_every_thread_of_the_server(protos: Path) -> None:
    first = sorted(os.sched_getaffinity(0))[0]
    process, _ = start_serve(protos, ["iris_model"])  # auto: the first usable CPU
    try:
        assert _cpus(process.pid) == {str(first)}
    finally:
        stop_process(process)
    process, _ = start_serve(protos, ["iris_model"], "--cpu-affinity", "none")
    try:
        assert _cpus(process.pid) != {str(first)}
    finally:
        stop_process(process)


def test_a_bad_cpu_affinity_is_refused(tmp_path: Path) -> None:
    for value, problem in (("fast", "is not auto, none or a list"), ("4096", "may not use")):
        result = CliRunner().invoke(main, ["--protos", str(tmp_path), "serve", "iris_model", "--cpu-affinity", value])
        assert result.exit_code == 2 and problem in result.output, result.output
