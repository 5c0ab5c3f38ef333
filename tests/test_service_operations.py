"""Running it in production: metrics that count exactly, access lines, request ids, traces, reloads.

Metrics are read from a private registry of an in-process server and from ``/metrics`` of a
``protoreg serve`` subprocess; traces go over OTLP/HTTP to a small collector the test runs on a
loopback port; reloads rewrite a model module and ``proto_versions/`` under a running server
while a client of the oldest release calls it in a loop.
"""

from __future__ import annotations

import json
import signal
import textwrap
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from iris_model import IrisModel
from prometheus_client import CollectorRegistry

from protoreg.cli import main as cli
from protoreg.service.compile import ProtoTree, load_protos
from protoreg.service.telemetry import Metrics, Telemetry
from tests.service_support import EchoModel, raw_call, register_models, running, start_serve, stop_process, wait_until

WAIT = 30.0
IRIS = "iris_model.v1.IrisModelService"
ECHO = "echo_model.v1.EchoModelService"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN}-01"


@pytest.fixture(scope="module")
def protos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("operations")
    return register_models(f"sqlite:///{tmp / 'r.db'}", tmp / "protos", [IrisModel, EchoModel])


@pytest.fixture(scope="module")
def tree(protos: Path) -> ProtoTree:
    return load_protos(protos)


def _iris(tree: ProtoTree, **fields: float) -> bytes:
    values = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2, **fields}
    return tree.message_class("iris_model.v1.PredictRequest")(**values).SerializeToString()  # type: ignore[no-any-return]


def _echo(tree: ProtoTree, **fields: Any) -> bytes:
    return tree.message_class("echo_model.v1.PredictRequest")(**fields).SerializeToString()  # type: ignore[no-any-return]


def _code(call: Callable[[], Any]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


# -- metrics ------------------------------------------------------------------------------------


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect() for sample in family.samples
    }


def _handled(samples: dict[Any, float], service: str, method: str, code: str) -> float:
    for (name, labels), value in samples.items():
        found = dict(labels)
        if (name == "grpc_server_handled_total" and found.get("grpc_service") == service
                and found.get("grpc_method") == method and found.get("grpc_code") == code):
            return value
    return 0.0


def test_metrics_count_every_call_with_its_code(tree: ProtoTree) -> None:
    registry = CollectorRegistry()
    telemetry = Telemetry(access_log=False, metrics=Metrics(registry))
    with running([IrisModel, EchoModel], tree, telemetry=telemetry) as (_server, address), \
            grpc.insecure_channel(address) as channel:
        for _ in range(3):
            raw_call(channel, f"/{IRIS}/Predict", _iris(tree), timeout=WAIT)
        for _ in range(2):
            assert _code(lambda: raw_call(channel, f"/{IRIS}/Predict", _iris(tree, sepal_length=-1.0),
                                          timeout=WAIT)) == grpc.StatusCode.INVALID_ARGUMENT
        assert _code(lambda: raw_call(channel, f"/{ECHO}/Predict", _echo(tree, name="x", fail=True),
                                      timeout=WAIT)) == grpc.StatusCode.INTERNAL
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=WAIT)
        wrap = tree.message_class("echo_model.v1.PredictStreamRequest")
        items = [wrap(request=tree.message_class("echo_model.v1.PredictRequest")(name=f"s{i}")).SerializeToString()
                 for i in range(4)]
        assert len(list(channel.stream_stream(f"/{ECHO}/PredictStream")(iter(items), timeout=WAIT))) == 4
        samples = _samples(registry)
    assert _handled(samples, IRIS, "Predict", "OK") == 3
    assert _handled(samples, IRIS, "Predict", "INVALID_ARGUMENT") == 2
    assert _handled(samples, ECHO, "Predict", "INTERNAL") == 1
    assert _handled(samples, "grpc.health.v1.Health", "Check", "OK") == 1
    assert _handled(samples, ECHO, "PredictStream", "OK") == 1
    stream = (("grpc_method", "PredictStream"), ("grpc_service", ECHO), ("grpc_type", "bidi_stream"))
    assert samples[("grpc_server_msg_received_total", stream)] == 4
    assert samples[("grpc_server_msg_sent_total", stream)] == 4
    started = (("grpc_method", "Predict"), ("grpc_service", IRIS), ("grpc_type", "unary"))
    assert samples[("grpc_server_started_total", started)] == 5
    assert samples[("grpc_server_handling_seconds_count", started)] == 5
    iris = (("major", "1"), ("model", "iris_model"))
    assert samples[("protoreg_model_batch_size_sum", iris)] == 3  # only valid inputs reach the model
    assert samples[("protoreg_model_predict_seconds_count", iris)] >= 1
    assert samples[("protoreg_release_info", (("major", "1"), ("model", "iris_model"), ("version", "1.0.0")))] == 1


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=WAIT) as response:
        return response.read().decode()  # type: ignore[no-any-return]


def _counter(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        head, value = line.rsplit(" ", 1)
        if all(f'{key}="{expected}"' in head for key, expected in labels.items()):
            total += float(value)
    return total


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
def test_metrics_endpoint_moves_by_exactly_the_calls_made(protos: Path, tree: ProtoTree, processes: int) -> None:
    port = _free_port()
    process, address = start_serve(protos, ["iris_model"], "--metrics-address", f"127.0.0.1:{port}",
                                   "--processes", str(processes))
    try:
        before = _scrape(port)
        channels = [grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
                    for _ in range(4)]  # four connections, so --processes 2 spreads them
        try:
            for i in range(20):
                raw_call(channels[i % 4], f"/{IRIS}/Predict", _iris(tree), timeout=WAIT)
            for i in range(6):
                assert _code(lambda i=i: raw_call(channels[i % 4], f"/{IRIS}/Predict", _iris(tree, petal_width=-2),
                                                  timeout=WAIT)) == grpc.StatusCode.INVALID_ARGUMENT
        finally:
            for channel in channels:
                channel.close()
        after = _scrape(port)
        labels = {"grpc_service": IRIS, "grpc_method": "Predict"}
        ok = _counter(after, "grpc_server_handled_total", grpc_code="OK", **labels) - _counter(
            before, "grpc_server_handled_total", grpc_code="OK", **labels)
        bad = _counter(after, "grpc_server_handled_total", grpc_code="INVALID_ARGUMENT", **labels) - _counter(
            before, "grpc_server_handled_total", grpc_code="INVALID_ARGUMENT", **labels)
        assert (ok, bad) == (20, 6)
        assert _counter(after, "protoreg_release_info", model="iris_model", version="1.0.0") >= 1
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        stop_process(process)


# -- request ids and access lines -----------------------------------------------------------------


def _access_lines(log: Path) -> list[dict[str, Any]]:
    lines = []
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("logger") == "protoreg.access":
            lines.append(entry)
    return lines


@pytest.mark.slow
def test_json_access_lines_carry_request_and_trace_ids_and_no_input(protos: Path, tree: ProtoTree) -> None:
    process, address = start_serve(protos, ["tests.service_support:EchoModel"], "--log-format", "json")
    log = protos.parent / "serve.log"
    try:
        with grpc.insecure_channel(address) as channel:
            call = channel.unary_unary(f"/{ECHO}/Predict")
            _, sent = call.with_call(_echo(tree, name="SECRET-INPUT-VALUE"), timeout=WAIT,
                                     metadata=(("x-request-id", "client-id-1"), ("traceparent", TRACEPARENT)))
            assert ("x-request-id", "client-id-1") in tuple(sent.trailing_metadata())
            _, fresh = call.with_call(_echo(tree, name="x"), timeout=WAIT)
            fresh_id = dict(fresh.trailing_metadata())["x-request-id"]
            assert len(fresh_id) == 32
            with pytest.raises(grpc.RpcError) as caught:
                call(_echo(tree, name="x", fail=True), timeout=WAIT,
                     metadata=(("x-request-id", "bad id with spaces;<>\"" + "z" * 300),))
            trailers = dict(caught.value.trailing_metadata())
            failing_id = trailers["x-request-id"]
            assert failing_id == trailers["request-id"] and failing_id.startswith("badidwithspaces")
            assert len(failing_id) == 128 and failing_id in (caught.value.details() or "")
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=WAIT)
        wait_until(lambda: len(_access_lines(log)) >= 4, "four access lines")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        stop_process(process)
    lines = _access_lines(log)
    first = next(entry for entry in lines if entry.get("request_id") == "client-id-1")
    assert first["trace_id"] == TRACE_ID and first["code"] == "OK"
    assert first["method"] == f"/{ECHO}/Predict" and first["model"] == "echo_model" and first["version"] == "1.0.0"
    assert first["duration_ms"] >= 0 and first["peer"].startswith("ipv4:127.0.0.1")
    assert any(entry["request_id"] == fresh_id for entry in lines)
    assert any(entry["code"] == "INTERNAL" and entry["request_id"] == failing_id for entry in lines)
    assert any(entry["method"] == "/grpc.health.v1.Health/Check" for entry in lines)
    text = log.read_text()
    traceback = next(json.loads(line) for line in text.splitlines()
                     if line.startswith("{") and "exception" in json.loads(line))
    assert traceback["request_id"] == failing_id and "the echo model was asked to fail" in traceback["exception"]
    assert "SECRET-INPUT-VALUE" not in text


# -- traces ---------------------------------------------------------------------------------------


class _Collector(BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server name
        length = int(self.headers.get("Content-Length", "0"))
        type(self).bodies.append(self.rfile.read(length))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[int, list[bytes]]]:
    _Collector.bodies = []
    server = HTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], _Collector.bodies
    finally:
        server.shutdown()


def _spans(bodies: list[bytes]) -> list[Any]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    spans = []
    for body in bodies:
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                spans.extend(scope.spans)
    return spans


@pytest.mark.slow
def test_a_call_is_a_span_continuing_the_traceparent_exported_over_otlp(
    protos: Path, tree: ProtoTree, collector: tuple[int, list[bytes]]
) -> None:
    port, bodies = collector
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
           "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{port}/v1/traces",
           "OTEL_BSP_SCHEDULE_DELAY": "50", "OTEL_SERVICE_NAME": "protoreg-test"}
    process, address = start_serve(protos, ["iris_model"], env=env)
    try:
        with grpc.insecure_channel(address) as channel:
            raw_call(channel, f"/{IRIS}/Predict", _iris(tree), timeout=WAIT)
            channel.unary_unary(f"/{IRIS}/Predict")(_iris(tree), timeout=WAIT,
                                                   metadata=(("traceparent", TRACEPARENT),))
        wait_until(lambda: any(s.trace_id.hex() == TRACE_ID for s in _spans(bodies)), "the traced call's spans")
        wait_until(lambda: len([s for s in _spans(bodies) if s.trace_id.hex() == TRACE_ID]) >= 5, "five spans")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        stop_process(process)
    traced = [s for s in _spans(bodies) if s.trace_id.hex() == TRACE_ID]
    (server,) = [s for s in traced if s.name == f"{IRIS}/Predict"]
    assert server.parent_span_id.hex() == PARENT_SPAN and server.kind == server.SPAN_KIND_SERVER
    children = {s.name for s in traced if s.parent_span_id == server.span_id}
    assert {"decode", "validate", "predict", "encode"} <= children


# -- reloads --------------------------------------------------------------------------------------

MODULE = '''
from pydantic import BaseModel


class In(BaseModel):
    x: float


class Out(BaseModel):
    y: float
{extra_out}

class Model:
    qualified_name = "reload_model"
    display_name = "Reload Model"
    description = "A model rewritten under a running server."
    version = "{version}"
    input_schema = In
    output_schema = Out

    def predict(self, data):
        return Out(y=data.x * 2{extra_value})
{v2}'''

V2 = '''

class In2(BaseModel):
    x: float
    scale: float = 1.0


class Out2(BaseModel):
    y: float


class ModelV2:
    qualified_name = "reload_model"
    display_name = "Reload Model"
    description = "The second major line."
    version = "2.0.0"
    input_schema = In2
    output_schema = Out2

    def predict(self, data):
        return Out2(y=data.x * data.scale)
'''


def _write_module(directory: Path, version: str, extra: bool = False, v2: bool = False) -> None:
    text = MODULE.format(version=version, extra_out="    note: str = ''\n" if extra else "",
                         extra_value=", note='new'" if extra else "", v2=V2 if v2 else "")
    (directory / "reload_model.py").write_text(textwrap.dedent(text))


def _register(tmp: Path, *refs: str) -> None:
    from click.testing import CliRunner

    result = CliRunner().invoke(cli, ["--db", f"sqlite:///{tmp / 'r.db'}", "--protos", str(tmp / "protos"),
                                      "register", *refs])
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_sighup_serves_new_releases_without_a_failed_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    modules = tmp_path / "modules"
    modules.mkdir()
    monkeypatch.syspath_prepend(str(modules))
    _write_module(modules, "1.0.0")
    _register(tmp_path, "reload_model:Model")
    protos = tmp_path / "protos"
    old = load_protos(protos)  # the contract an old client compiled, kept for its whole life
    request = old.message_class("reload_model.v1.PredictRequest")(x=2.0).SerializeToString()
    process, address = start_serve(protos, ["reload_model:Model"], "--grace", "1", path=[modules])
    failures: list[str] = []
    calls = [0]
    stop = threading.Event()

    def old_client() -> None:
        with grpc.insecure_channel(address) as channel:
            call = channel.unary_unary("/reload_model.v1.ReloadModelService/Predict")
            while not stop.is_set():
                try:
                    answer = old.message_class("reload_model.v1.PredictResponse").FromString(
                        call(request, timeout=WAIT))
                    assert answer.y == 4.0  # type: ignore[attr-defined]
                    calls[0] += 1
                except Exception as error:  # any failure counts
                    failures.append(repr(error))

    def releases(channel: grpc.Channel) -> list[str]:
        registry = old.message_class("protoreg.registry.v1.ListReleasesRequest")(model="reload_model")
        data = raw_call(channel, "/protoreg.registry.v1.RegistryService/ListReleases",
                        registry.SerializeToString(), timeout=WAIT)
        answer = old.message_class("protoreg.registry.v1.ListReleasesResponse").FromString(data)
        return [r.version for r in answer.releases]  # type: ignore[attr-defined]

    client = threading.Thread(target=old_client)
    client.start()
    try:
        with grpc.insecure_channel(address) as channel:
            wait_until(lambda: calls[0] > 20, "the old client calling")
            # a new minor release, then SIGHUP
            time.sleep(0.01)  # a new modification time for the module
            _write_module(modules, "1.1.0", extra=True)
            importlib.invalidate_caches()
            sys.modules.pop("reload_model", None)
            _register(tmp_path, "reload_model:Model")
            process.send_signal(signal.SIGHUP)
            wait_until(lambda: releases(channel) == ["1.1.0"], "1.1.0 served")
            # a new major line beside it, then SIGHUP
            _write_module(modules, "1.1.0", extra=True, v2=True)
            sys.modules.pop("reload_model", None)
            _register(tmp_path, "reload_model:ModelV2")
            process.send_signal(signal.SIGHUP)
            wait_until(lambda: releases(channel) == ["1.1.0", "2.0.0"], "2.0.0 served beside 1.1.0")
            new = load_protos(protos)
            v2 = new.message_class("reload_model.v2.PredictRequest")(x=3.0, scale=2.0).SerializeToString()
            answer = raw_call(channel, "/reload_model.v2.ReloadModelService/Predict", v2, timeout=WAIT)
            assert new.message_class("reload_model.v2.PredictResponse").FromString(answer).y == 6.0  # type: ignore[attr-defined]
            # a reload that fails changes nothing
            (protos / "reload_model" / "v1" / "broken.proto").write_text('syntax = "proto3"; message {')
            process.send_signal(signal.SIGHUP)
            wait_until(lambda: "reload failed" in (tmp_path / "serve.log").read_text(), "the failed reload logged")
            (protos / "reload_model" / "v1" / "broken.proto").unlink()
            assert releases(channel) == ["1.1.0", "2.0.0"]
            # a line gone from proto_versions/: NOT_SERVING, then UNIMPLEMENTED
            import shutil

            shutil.rmtree(protos / "reload_model" / "v2")
            process.send_signal(signal.SIGHUP)
            health = health_pb2_grpc.HealthStub(channel)
            v2_service = "reload_model.v2.ReloadModelService"
            wait_until(lambda: health.Check(health_pb2.HealthCheckRequest(service=v2_service), timeout=WAIT).status
                   == health_pb2.HealthCheckResponse.NOT_SERVING, "v2 NOT_SERVING")
            wait_until(lambda: _code(lambda: raw_call(channel, f"/{v2_service}/Predict", v2, timeout=WAIT))
                   == grpc.StatusCode.UNIMPLEMENTED, "v2 UNIMPLEMENTED")
            wait_until(lambda: calls[0] > 200, "more calls by the old client")
    finally:
        stop.set()
        client.join(WAIT)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        stop_process(process)
    assert failures == []
    assert calls[0] > 200
