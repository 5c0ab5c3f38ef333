"""JSON over HTTP (``protoreg serve --http-address``): real HTTP requests against a real server,
each answer compared with what the gRPC side of the same server answers for the same input.

The server is in-process (``tests/service_support.running``) with both transports on free
loopback ports; requests go out with :mod:`urllib.request`, gRPC calls with a real channel.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import struct
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from iris_model import IrisModel
from prometheus_client import CollectorRegistry

from protoreg.cli import main as cli
from protoreg.service.compile import ProtoTree, load_protos
from protoreg.service.http import CONNECT_CODES, example_request
from protoreg.service.models import ModelSource
from protoreg.service.server import ServeOptions, create_server
from protoreg.service.telemetry import AccessLog, Metrics, Telemetry
from tests.service_support import EchoModel, register_models, running, wait_until
from tests.test_service_operations import _register, _write_module

WAIT = 30.0
IRIS = "iris_model.v1.IrisModelService"
ECHO = "echo_model.v1.EchoModelService"
REGISTRY = "protoreg.registry.v1.RegistryService"
GOOD = {"sepalLength": 5.1, "sepalWidth": 3.5, "petalLength": 1.4, "petalWidth": 0.2}
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def protos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("http")
    return register_models(f"sqlite:///{tmp / 'r.db'}", tmp / "protos", [IrisModel, EchoModel])


@pytest.fixture(scope="module")
def tree(protos: Path) -> ProtoTree:
    return load_protos(protos)


class Answer:
    """One HTTP response: status, headers, body."""

    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def http(url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         method: str | None = None) -> Answer:
    """One real HTTP request; an error status is an answer, not an exception."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return Answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, error.headers, error.read())


def post(base: str, path: str, payload: Any, **headers: str) -> Answer:
    """A Connect unary call with a JSON body (``payload``, or bytes as they are)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return http(f"{base}/{path}", body, {"Content-Type": "application/json", "Connect-Protocol-Version": "1",
                                         **{k.replace("_", "-"): v for k, v in headers.items()}})


def grpc_json(channel: grpc.Channel, tree: ProtoTree, path: str, payload: dict[str, Any],
              metadata: tuple[tuple[str, str], ...] = ()) -> tuple[grpc.StatusCode, Any]:
    """The same call over gRPC, the request built from the same JSON: (code, answer as JSON or the error)."""
    service, method = path.split("/")
    descriptor = tree.pool.FindServiceByName(service).methods_by_name[method]
    request = json_format.ParseDict(payload, tree.message_class(descriptor.input_type.full_name)())
    response_class = tree.message_class(descriptor.output_type.full_name)
    try:
        raw = channel.unary_unary(f"/{path}")(request.SerializeToString(), timeout=WAIT, metadata=metadata)
    except grpc.RpcError as error:
        return error.code(), error
    return grpc.StatusCode.OK, json_format.MessageToDict(response_class.FromString(raw))


def connect_code(code: grpc.StatusCode) -> str:
    return CONNECT_CODES[code.name][0]


def _servers(tree: ProtoTree, **options: Any) -> Any:
    options.setdefault("http_address", "127.0.0.1:0")
    return running([IrisModel, EchoModel], tree, **options)


def _base(server: Any) -> str:
    return f"http://127.0.0.1:{server.http.port}"


# -- the contract, compared with gRPC ---------------------------------------------------------


def test_good_and_bad_input_answer_as_on_grpc(tree: ProtoTree) -> None:
    with _servers(tree) as (server, address), grpc.insecure_channel(address) as channel:
        base = _base(server)
        path = f"{IRIS}/Predict"
        good = post(base, path, GOOD)
        assert good.status == 200 and good.headers["Content-Type"] == "application/json"
        assert good.json() == {"species": "SPECIES_SETOSA"}
        assert grpc_json(channel, tree, path, GOOD) == (grpc.StatusCode.OK, good.json())
        assert len(good.headers["X-Request-Id"]) == 32

        # original field names are read too (json_format accepts both), and 0 is a value
        zeros = {"sepal_length": 0, "sepal_width": 0, "petal_length": 0, "petal_width": 0}
        assert post(base, path, zeros).json() == grpc_json(channel, tree, path, zeros)[1]

        for bad in ({"sepalLength": 5.1}, {**GOOD, "sepalLength": -1.0}, {"sepalLength": 1, "sepalWidth": "x"}):
            answer = post(base, path, bad)
            code, error = grpc_json(channel, tree, path, bad) if "x" not in bad.values() else (None, None)
            assert answer.status == 400, answer.body
            body = answer.json()
            assert body["code"] == "invalid_argument"
            if code is None:  # not even a request: protobuf's own JSON parser refuses it
                assert 'not a valid "iris_model.v1.PredictRequest" message' in body["message"] and "details" not in body
                continue
            assert code == grpc.StatusCode.INVALID_ARGUMENT and body["message"] == error.details()
            status = rpc_status.from_call(error)
            assert status is not None
            expected = error_details_pb2.BadRequest()
            status.details[0].Unpack(expected)
            [detail] = body["details"]
            assert detail["type"] == "google.rpc.BadRequest"
            value = detail["value"]
            assert "=" not in value  # unpadded, as the protocol asks
            sent = error_details_pb2.BadRequest.FromString(base64.b64decode(value + "=" * (-len(value) % 4)))
            assert sent == expected and sent.field_violations
            assert detail["debug"] == json_format.MessageToDict(expected)

        garbage = post(base, path, b"{not json")
        assert garbage.status == 400 and garbage.json()["code"] == "invalid_argument"


def test_every_type_round_trips_as_on_grpc(tree: ProtoTree) -> None:
    """int64 as strings, bytes as base64, enums by name, maps, nested lists, timestamps, durations."""
    payload = {
        "name": "ada", "count": "9007199254740993", "ratio": 0.0, "flag": False, "blob": "aGVsbG8=",
        "color": "COLOR_DARK_BLUE", "level": "LEVEL_HIGH", "mode": "PREDICT_REQUEST_MODE_SLOW",
        "point": {"x": 1.5, "label": ""}, "points": [{"x": 1}, {"x": 2, "y": 3}], "tags": ["a", "b"],
        "weights": {"w": 0.5}, "matrix": [{"values": [1, 2]}, {"values": []}], "groups": {"g": {"values": ["1"]}},
        "when": "2024-01-31T12:00:00Z", "wait": "1.500s", "note": "n",
    }
    with _servers(tree) as (server, address), grpc.insecure_channel(address) as channel:
        answer = post(_base(server), f"{ECHO}/Predict", payload)
        assert answer.status == 200, answer.body
        code, expected = grpc_json(channel, tree, f"{ECHO}/Predict", payload)
    assert code == grpc.StatusCode.OK and answer.json() == expected
    assert answer.json()["count"] == "9007199254740993" and answer.json()["blob"] == "aGVsbG8="


def test_binary_protobuf_bodies_are_the_grpc_bytes(tree: ProtoTree) -> None:
    request = json_format.ParseDict(GOOD, tree.message_class("iris_model.v1.PredictRequest")())
    with _servers(tree) as (server, address), grpc.insecure_channel(address) as channel:
        answer = http(f"{_base(server)}/{IRIS}/Predict", request.SerializeToString(),
                      {"Content-Type": "application/proto"})
        expected = channel.unary_unary(f"/{IRIS}/Predict")(request.SerializeToString(), timeout=WAIT)
    assert answer.status == 200 and answer.headers["Content-Type"] == "application/proto"
    assert answer.body == expected


def test_the_registry_service_answers_as_on_grpc(tree: ProtoTree) -> None:
    with _servers(tree) as (server, address), grpc.insecure_channel(address) as channel:
        base = _base(server)
        for method, payload in (("ListModels", {}), ("GetFieldMap", {"model": "iris_model"}),
                                ("GetProto", {"model": "echo_model", "major": 1})):
            answer = post(base, f"{REGISTRY}/{method}", payload)
            assert answer.status == 200
            assert (grpc.StatusCode.OK, answer.json()) == grpc_json(channel, tree, f"{REGISTRY}/{method}", payload)
        for payload, status in (({"model": "no_such_model"}, 404), ({"model": "Not A Name"}, 400)):
            answer = post(base, f"{REGISTRY}/ListReleases", payload)
            code, error = grpc_json(channel, tree, f"{REGISTRY}/ListReleases", payload)
            assert answer.status == status
            assert answer.json() == {"code": connect_code(code), "message": error.details()}


def test_unknown_models_and_methods_are_unimplemented(tree: ProtoTree) -> None:
    with _servers(tree) as (server, address), grpc.insecure_channel(address) as channel:
        base = _base(server)
        unknown = ("nope_model.v1.NopeModelService/Predict", f"{IRIS}/Explain", f"{IRIS.replace('v1', 'v9')}/Predict")
        for path in unknown:
            answer = post(base, path, {})
            with pytest.raises(grpc.RpcError) as caught:
                channel.unary_unary(f"/{path}")(b"", timeout=WAIT)
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
            assert answer.status == 501 and answer.json()["code"] == "unimplemented", path
            assert path in answer.json()["message"]
        # a GET of a method says to POST; an unknown page is a plain 404
        assert http(f"{base}/{IRIS}/Predict").status == 405
        assert http(f"{base}/no/such/page.html").status == 404


def test_streams_stay_grpc_only(tree: ProtoTree) -> None:
    with _servers(tree) as (server, _address):
        base = _base(server)
        unary = post(base, f"{ECHO}/PredictStream", {"request": {"name": "x"}})
        assert unary.status == 501 and unary.json()["code"] == "unimplemented"
        assert "served over gRPC only" in unary.json()["message"]
        item = json.dumps({"request": {"name": "x"}}).encode()
        for path in (f"{ECHO}/PredictStream", f"{ECHO}/Predict"):
            answer = http(f"{base}/{path}", struct.pack(">BI", 0, len(item)) + item,
                          {"Content-Type": "application/connect+json"})
            # Connect's streaming protocol: HTTP 200, the error in the end-of-stream message
            assert answer.status == 200 and answer.headers["Content-Type"] == "application/connect+json"
            flags, length = struct.unpack(">BI", answer.body[:5])
            assert flags == 0x02 and length == len(answer.body) - 5
            error = json.loads(answer.body[5:])["error"]
            assert error["code"] == "unimplemented"
        assert "Connect's unary protocol" in error["message"]  # the last one: Predict is unary


def test_protocol_errors(tree: ProtoTree) -> None:
    with _servers(tree) as (server, _address):
        base = _base(server)
        wrong_type = http(f"{base}/{IRIS}/Predict", b"{}", {"Content-Type": "text/plain"})
        assert wrong_type.status == 415 and "application/json" in wrong_type.headers["Accept-Post"]
        later = post(base, f"{IRIS}/Predict", GOOD, Connect_Protocol_Version="2")
        assert later.status == 400 and later.json()["code"] == "invalid_argument"
        without = http(f"{base}/{IRIS}/Predict", json.dumps(GOOD).encode(), {"Content-Type": "application/json"})
        assert without.status == 200  # the version header is optional, so plain curl works
        timeout = post(base, f"{IRIS}/Predict", GOOD, Connect_Timeout_Ms="soon")
        assert timeout.status == 400 and "Connect-Timeout-Ms" in timeout.json()["message"]


def test_deadlines_failures_and_request_ids(tree: ProtoTree, tmp_path: Path) -> None:
    with _servers(tree) as (server, _address):
        base = _base(server)
        marker = tmp_path / "started"
        late = post(base, f"{ECHO}/Predict", {"name": "x", "sleep": 2.0, "startedMarker": str(marker)},
                    Connect_Timeout_Ms="200")
        assert late.status == 504 and late.json()["code"] == "deadline_exceeded"
        failed = post(base, f"{ECHO}/Predict", {"name": "x", "fail": True}, X_Request_Id="client-7")
        assert failed.status == 500 and failed.json()["code"] == "internal"
        assert failed.headers["X-Request-Id"] == "client-7" and "client-7" in failed.json()["message"]
        assert post(base, f"{IRIS}/Predict", GOOD, X_Request_Id="a b<c>").headers["X-Request-Id"] == "abc"


def test_oversized_bodies_are_resource_exhausted(tree: ProtoTree) -> None:
    big = {"name": "x" * 3000}
    with _servers(tree, max_message_bytes=2048) as (server, address), grpc.insecure_channel(address) as channel:
        answer = post(_base(server), f"{ECHO}/Predict", big)
        code, _ = grpc_json(channel, tree, f"{ECHO}/Predict", big)
        small = post(_base(server), f"{ECHO}/Predict", {"name": "x"})
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert answer.status == 413 and answer.json()["code"] == "resource_exhausted"
    assert "--max-message-bytes" in answer.json()["message"]
    assert small.status == 200


BODIES = st.one_of(
    st.binary(max_size=256),
    st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=8),
                 lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                 max_leaves=12).map(lambda value: json.dumps(value).encode()),
    st.just(b'{"tree": ' * 200 + b"{}" + b"}" * 200),  # deeper than protobuf's recursion limit
)


def test_hostile_bodies_are_invalid_argument_never_a_crash(tree: ProtoTree) -> None:
    with _servers(tree) as (server, _address):
        base = _base(server)

        @settings(deadline=None, database=None, max_examples=150, suppress_health_check=list(HealthCheck))
        @given(path=st.sampled_from([f"{IRIS}/Predict", f"{ECHO}/Predict", f"{REGISTRY}/GetFieldMap"]),
               kind=st.sampled_from(["application/json", "application/proto"]), body=BODIES)
        def call(path: str, kind: str, body: bytes) -> None:
            answer = http(f"{base}/{path}", body, {"Content-Type": kind})
            assert answer.status in (200, 400, 404), (answer.status, answer.body)
            if answer.status != 200:
                assert answer.json()["code"] in ("invalid_argument", "not_found")

        call()


# -- access -----------------------------------------------------------------------------------


def test_bearer_token_as_on_grpc(tree: ProtoTree) -> None:
    with _servers(tree, auth_token=TOKEN) as (server, address), grpc.insecure_channel(address) as channel:
        base = _base(server)
        path = f"{IRIS}/Predict"
        code, error = grpc_json(channel, tree, path, GOOD)
        assert code == grpc.StatusCode.UNAUTHENTICATED
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            answer = post(base, path, GOOD, **headers)
            assert answer.status == 401
            assert answer.json() == {"code": "unauthenticated", "message": error.details()}
        # nothing can be probed without the token: unknown methods are unauthenticated too
        assert post(base, "nope.v1.NopeService/Predict", {}).status == 401
        ok = post(base, path, GOOD, Authorization=f"Bearer {TOKEN}")
        assert ok.status == 200
        assert (grpc.StatusCode.OK, ok.json()) == grpc_json(
            channel, tree, path, GOOD, (("authorization", f"Bearer {TOKEN}"),))
        # health needs no token; the pages do: a bearer token, or a browser's Basic password
        assert http(f"{base}/healthz").status == 200 and http(f"{base}/readyz").status == 200
        page = http(f"{base}/")
        assert page.status == 401 and page.headers["WWW-Authenticate"].startswith("Basic ")
        basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
        assert http(f"{base}/", headers={"Authorization": f"Basic {basic}"}).status == 200
        assert http(f"{base}/", headers={"Authorization": f"Bearer {TOKEN}"}).status == 200
        wrong = base64.b64encode(b"anyone:guess").decode()
        assert http(f"{base}/", headers={"Authorization": f"Basic {wrong}"}).status == 401


# -- operations ---------------------------------------------------------------------------------


def test_metrics_and_access_lines_count_http_calls(tree: ProtoTree) -> None:
    registry = CollectorRegistry()
    log = io.StringIO()
    telemetry = Telemetry(access_log=AccessLog("json", stream=log), metrics=Metrics(registry))
    with _servers(tree, telemetry=telemetry) as (server, address), grpc.insecure_channel(address) as channel:
        base = _base(server)
        for _ in range(3):
            assert post(base, f"{IRIS}/Predict", GOOD).status == 200
        assert post(base, f"{IRIS}/Predict", {"sepalLength": 1}).status == 400
        assert grpc_json(channel, tree, f"{IRIS}/Predict", GOOD)[0] == grpc.StatusCode.OK
        assert post(base, "nope.v1.NopeService/Predict", {}).status == 501  # refused before a handler
        samples = [(s.name, s.labels, s.value) for f in registry.collect() for s in f.samples]

    def sample(name: str, **labels: str) -> float:
        return sum(value for found, got, value in samples if found == name and got == labels)

    predict = {"grpc_type": "unary", "grpc_service": IRIS, "grpc_method": "Predict"}
    assert sample("grpc_server_handled_total", **predict, grpc_code="OK") == 4  # 3 over HTTP, 1 over gRPC
    assert sample("grpc_server_handled_total", **predict, grpc_code="INVALID_ARGUMENT") == 1
    assert sample("grpc_server_started_total", **predict) == 5
    assert sample("grpc_server_handling_seconds_count", **predict) == 5
    assert sample("protoreg_model_batch_size_sum", model="iris_model", major="1") == 4
    assert not [labels for name, labels, _ in samples if labels.get("grpc_service", "").startswith("nope")]
    lines = [json.loads(line) for line in log.getvalue().splitlines()]  # written when the server stopped
    connect = [line for line in lines if line.get("protocol") == "connect"]
    assert len(connect) == 4 and len(lines) == 5
    assert {line["code"] for line in connect} == {"OK", "INVALID_ARGUMENT"}
    assert all(line["peer"].startswith("ipv4:127.0.0.1:") and line["message"].endswith(" protocol=connect")
               and line["model"] == "iris_model" for line in connect)


def test_readyz_follows_the_health_status(tree: ProtoTree) -> None:
    with _servers(tree) as (server, _address):
        base = _base(server)
        assert (http(f"{base}/readyz").status, http(f"{base}/readyz").body) == (200, b"SERVING\n")
        server.set_serving(False)
        assert (http(f"{base}/readyz").status, http(f"{base}/readyz").body) == (503, b"NOT_SERVING\n")
        assert http(f"{base}/healthz").status == 200


def test_reloads_are_seen_by_the_http_side(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import shutil

    modules = tmp_path / "modules"
    modules.mkdir()
    monkeypatch.syspath_prepend(str(modules))
    monkeypatch.delitem(sys.modules, "reload_model", raising=False)
    _write_module(modules, "1.0.0")
    _register(tmp_path, "reload_model:Model")
    protos = tmp_path / "protos"
    options = ServeOptions(address="127.0.0.1:0", http_address="127.0.0.1:0", drain=0.2)
    source = ModelSource(["reload_model:Model"])
    tree = load_protos(protos)
    server = create_server([c.model for c in _candidates(source, tree)], tree, options, ["reload_model:Model"], source)
    server.start()
    try:
        base = _base(server)
        v2 = "reload_model.v2.ReloadModelService/Predict"
        assert post(base, "reload_model.v1.ReloadModelService/Predict", {"x": 2}).json() == {"y": 4.0}
        assert post(base, v2, {"x": 3, "scale": 2}).status == 501
        assert "reload_model.v2" not in http(f"{base}/").body.decode()
        _write_module(modules, "1.0.0", v2=True)
        importlib.invalidate_caches()
        sys.modules.pop("reload_model", None)
        _register(tmp_path, "reload_model:ModelV2")
        server.reload()
        assert post(base, v2, {"x": 3, "scale": 2}).json() == {"y": 6.0}
        releases = post(base, f"{REGISTRY}/ListReleases", {"model": "reload_model"}).json()["releases"]
        assert [r["version"] for r in releases] == ["1.0.0", "2.0.0"]
        assert "reload_model.v2.ReloadModelService/Predict" in http(f"{base}/").body.decode()
        shutil.rmtree(protos / "reload_model" / "v2")
        server.reload()
        wait_until(lambda: post(base, v2, {"x": 3, "scale": 2}).status == 501, "v2 gone")
    finally:
        server.stop(0)
        sys.modules.pop("reload_model", None)


def _candidates(source: ModelSource, tree: ProtoTree) -> list[Any]:
    from protoreg.service.models import choose

    return choose(source.candidates(), tree)


# -- the pages ---------------------------------------------------------------------------------


def test_without_a_site_the_root_lists_what_is_served(tree: ProtoTree) -> None:
    with _servers(tree) as (server, _address):
        base = _base(server)
        page = http(f"{base}/")
        assert page.status == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
        text = page.body.decode()
        assert "protoreg site --out DIR" in text and "--site DIR" in text
        for path in (f"{IRIS}/Predict", f"{ECHO}/Predict"):
            assert f'data-path="{path}"' in text
        css = http(f"{base}/static/site.css")
        assert css.status == 200 and css.headers["Content-Type"].startswith("text/css")
        assert http(f"{base}/static/site.js").headers["Content-Type"].startswith("text/javascript")


def test_example_requests_are_accepted_as_they_are(tree: ProtoTree) -> None:
    """The page's JSON forms start from every field at its zero value (nested messages too);
    sent as they are, both models answer them."""
    echo = example_request(tree.message_class("echo_model.v1.PredictRequest"))
    assert echo["point"] == {"x": 0.0, "y": 0.0, "label": ""} and echo["points"] == [] and echo["weights"] == {}
    assert echo["count"] == "0" and echo["color"] == "COLOR_RED" and echo["when"] == "1970-01-01T00:00:00Z"
    with _servers(tree) as (server, _address):
        for service in (ECHO, IRIS):
            example = example_request(tree.message_class(f"{service.split('.')[0]}.v1.PredictRequest"))
            answer = post(_base(server), f"{service}/Predict", example)
            assert answer.status == 200, answer.body


def test_site_pages_mark_what_is_served(tree: ProtoTree, tmp_path: Path) -> None:
    site = tmp_path / "site"
    db = f"sqlite:///{tmp_path / 'r.db'}"
    result = CliRunner().invoke(cli, ["--db", db, "--protos", str(tmp_path / "protos"), "register", "iris_model"])
    assert result.exit_code == 0, result.output
    assert CliRunner().invoke(cli, ["--db", db, "site", "--out", str(site)]).exit_code == 0
    with _servers(tree, site=site) as (server, _address):
        base = _base(server)
        index = http(f"{base}/").body.decode()
        assert '<span class="badge served">served</span>' in index and 'data-try-it-base="./"' in index
        try_page = http(f"{base}/iris_model/try.html").body.decode()
        assert 'data-path="iris_model.v1.IrisModelService/Predict"' in try_page and "disabled" not in try_page
        assert http(f"{base}/site.json").status == 200
        proto = http(f"{base}/iris_model/proto/1.0.0/iris_model.proto")
        assert proto.status == 200 and b"package iris_model.v1;" in proto.body


# -- the command ---------------------------------------------------------------------------------


def test_serve_refuses_bad_http_options(protos: Path, tmp_path: Path) -> None:
    def serve(*args: str) -> Any:
        return CliRunner().invoke(cli, ["--protos", str(protos), "serve", "iris_model", *args])

    alone = serve("--site", str(tmp_path))
    assert alone.exit_code == 2 and "--site needs --http-address" in alone.output
    empty = serve("--http-address", "127.0.0.1:0", "--site", str(tmp_path))
    assert empty.exit_code == 2 and "protoreg site --out DIR" in empty.output
    port = serve("--http-address", "127.0.0.1:99999")
    assert port.exit_code == 2 and '--http-address "127.0.0.1:99999"' in port.output


def test_a_busy_http_port_is_one_sentence(tree: ProtoTree) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        server = create_server([IrisModel], tree, ServeOptions(address="127.0.0.1:0",
                                                                http_address=f"127.0.0.1:{taken}"))
        with pytest.raises(Exception, match=rf"cannot listen on 127\.0\.0\.1:{taken} for HTTP .*--http-address"):
            server.start()
