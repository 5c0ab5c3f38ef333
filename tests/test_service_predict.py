"""Predict and PredictStream over a real gRPC server: presence, enums, nesting, status codes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status
from iris_model import IrisModel

from protoreg.service.compile import ProtoTree, load_protos
from protoreg.service.server import ModelServer
from tests.service_support import EchoModel, raw_call, register_models, repo_protos, running

ECHO = "/echo_model.v1.EchoModelService"
IRIS = "/iris_model.v1.IrisModelService"


@pytest.fixture(scope="module")
def echo_tree(tmp_path_factory: pytest.TempPathFactory) -> ProtoTree:
    tmp = tmp_path_factory.mktemp("echo")
    protos = register_models(f"sqlite:///{tmp / 'registry.db'}", tmp / "protos", [EchoModel])
    return load_protos(protos)


@pytest.fixture(scope="module")
def echo(echo_tree: ProtoTree) -> Iterator[tuple[ModelServer, grpc.Channel]]:
    with running([EchoModel], echo_tree, max_message_bytes=64 * 1024) as (server, address):
        with grpc.insecure_channel(address) as channel:
            yield server, channel


@pytest.fixture(scope="module")
def iris() -> Iterator[tuple[ProtoTree, grpc.Channel]]:
    tree = repo_protos()
    with running([IrisModel], tree) as (_server, address), grpc.insecure_channel(address) as channel:
        yield tree, channel


def _cls(tree: ProtoTree, name: str) -> Any:
    return tree.message_class(name)


def call(
    tree: ProtoTree,
    channel: grpc.Channel,
    package: str,
    service: str,
    request: Message,
    timeout: float | None = None,
) -> Any:
    data = raw_call(channel, f"/{package}.{service}/Predict", request.SerializeToString(), timeout)
    return _cls(tree, f"{package}.PredictResponse").FromString(data)


def echo_call(tree: ProtoTree, channel: grpc.Channel, timeout: float | None = None, **fields: Any) -> Any:
    request = _cls(tree, "echo_model.v1.PredictRequest")(**fields)
    return call(tree, channel, "echo_model.v1", "EchoModelService", request, timeout)


def status_of(error: grpc.RpcError) -> tuple[grpc.StatusCode, str, list[tuple[str, str]]]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    violations = []
    if status is not None:
        for detail in status.details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                violations += [(v.field, v.description) for v in bad.field_violations]
    return error.code(), error.details() or "", violations


def iris_request(tree: ProtoTree, **fields: float) -> Message:
    result: Message = _cls(tree, "iris_model.v1.PredictRequest")(**fields)
    return result


ZEROS = {"sepal_length": 0.0, "sepal_width": 0.0, "petal_length": 0.0, "petal_width": 0.0}


# -- iris -------------------------------------------------------------------------------------


def test_all_zero_iris_input_returns_a_species(iris: tuple[ProtoTree, grpc.Channel]) -> None:
    tree, channel = iris
    response = call(tree, channel, "iris_model.v1", "IrisModelService", iris_request(tree, **ZEROS))
    assert response.HasField("species")
    species = tree.pool.FindEnumTypeByName("iris_model.v1.Species").values_by_number[response.species].name
    assert species in {"SPECIES_SETOSA", "SPECIES_VERSICOLOR", "SPECIES_VIRGINICA"}


def test_a_missing_field_is_invalid_argument_naming_it(iris: tuple[ProtoTree, grpc.Channel]) -> None:
    tree, channel = iris
    request = iris_request(tree, **{k: v for k, v in ZEROS.items() if k != "petal_width"})
    with pytest.raises(grpc.RpcError) as caught:
        call(tree, channel, "iris_model.v1", "IrisModelService", request)
    code, details, violations = status_of(caught.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "petal_width" in details
    assert violations == [("petal_width", "Field required")]
    # and the server keeps answering
    assert call(tree, channel, "iris_model.v1", "IrisModelService", iris_request(tree, **ZEROS)).species


def test_a_value_out_of_range_is_a_field_violation(iris: tuple[ProtoTree, grpc.Channel]) -> None:
    tree, channel = iris
    with pytest.raises(grpc.RpcError) as caught:
        call(
            tree,
            channel,
            "iris_model.v1",
            "IrisModelService",
            iris_request(tree, **{**ZEROS, "sepal_width": -1}),
        )
    code, _, violations = status_of(caught.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert [name for name, _ in violations] == ["sepal_width"]
    assert rpc_status.from_call(caught.value).code == code_pb2.INVALID_ARGUMENT  # type: ignore[arg-type,union-attr]


def test_garbage_bytes_are_invalid_argument(iris: tuple[ProtoTree, grpc.Channel]) -> None:
    tree, channel = iris
    with pytest.raises(grpc.RpcError) as caught:
        raw_call(channel, f"{IRIS}/Predict", b"\xff\xff\xff\xff\xff\x00garbage")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid" in (caught.value.details() or "")
    assert call(tree, channel, "iris_model.v1", "IrisModelService", iris_request(tree, **ZEROS)).species


@pytest.mark.parametrize("method", [f"{IRIS}/Nope", "/iris_model.v9.IrisModelService/Predict", "/x.Y/Z"])
def test_unknown_service_or_method_is_unimplemented(
    iris: tuple[ProtoTree, grpc.Channel], method: str
) -> None:
    tree, channel = iris
    with pytest.raises(grpc.RpcError) as caught:
        raw_call(channel, method, b"")
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert call(tree, channel, "iris_model.v1", "IrisModelService", iris_request(tree, **ZEROS)).species


# -- echo: presence, enums, nesting -----------------------------------------------------------


def test_zero_empty_and_false_are_values_not_absence(echo_tree: ProtoTree, echo: Any) -> None:
    _, channel = echo
    response = echo_call(echo_tree, channel, name="", count=0, ratio=0.0, flag=False, blob=b"")
    assert response.name == "" and response.HasField("name")
    assert response.count == 0 and response.HasField("count")
    assert response.ratio == 0.0 and response.HasField("ratio")
    assert response.flag is False and response.HasField("flag")
    assert set(response.fields_set) == {"name", "count", "ratio", "flag", "blob", "note"}


def test_absent_optional_fields_take_pydantic_defaults(echo_tree: ProtoTree, echo: Any) -> None:
    _, channel = echo
    response = echo_call(echo_tree, channel, name="n")
    assert list(response.fields_set) == ["name", "note"]  # note: Optional without default -> None
    assert not response.HasField("note")
    assert response.count == 7  # the pydantic default, not proto's 0
    assert response.flag is True
    assert not response.HasField("ratio")  # default None stays absent on the way out
    assert not response.HasField("level") and not response.HasField("point")
    color = echo_tree.pool.FindEnumTypeByName("echo_model.v1.Color")
    assert response.color == color.values_by_name["COLOR_RED"].number


def test_absent_required_field_is_named(echo_tree: ProtoTree, echo: Any) -> None:
    _, channel = echo
    with pytest.raises(grpc.RpcError) as caught:
        echo_call(echo_tree, channel, count=1)
    code, details, violations = status_of(caught.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert violations == [("name", "Field required")]
    assert "name: Field required" in details


def test_every_type_round_trips(echo_tree: ProtoTree, echo: Any) -> None:
    _, channel = echo
    pool = echo_tree.pool
    enum = pool.FindEnumTypeByName
    point = _cls(echo_tree, "echo_model.v1.Point")
    when = datetime(2024, 2, 29, 12, 30, 15, 123456, tzinfo=UTC)
    request = _cls(echo_tree, "echo_model.v1.PredictRequest")(
        name="flower",
        count=-(2**40),
        ratio=0.25,
        blob=b"\x00\x01",
        color=enum("echo_model.v1.Color").values_by_name["COLOR_DARK_BLUE"].number,
        level=enum("echo_model.v1.Level").values_by_name["LEVEL_HIGH"].number,
        mode=enum("echo_model.v1.PredictRequestMode").values_by_name["PREDICT_REQUEST_MODE_SLOW"].number,
        point=point(x=0.0),
        points=[point(x=1.0, y=2.0, label=""), point(x=3.0)],
        tags=["a", "", "c"],
        weights={"w": 0.0, "v": 1.5},
        matrix=[
            _cls(echo_tree, "echo_model.v1.DoubleList")(values=[1.0, 2.0]),
            _cls(echo_tree, "echo_model.v1.DoubleList")(values=[]),
        ],
        groups={"g": _cls(echo_tree, "echo_model.v1.Int64List")(values=[1, 2, 3])},
    )
    request.when.FromDatetime(when)  # type: ignore[attr-defined]
    request.wait.FromTimedelta(timedelta(seconds=90, microseconds=5))  # type: ignore[attr-defined]
    response = call(echo_tree, channel, "echo_model.v1", "EchoModelService", request)
    assert response.name == "flower" and response.count == -(2**40) and response.ratio == 0.25
    assert response.blob == b"\x00\x01"
    assert enum("echo_model.v1.Color").values_by_number[response.color].name == "COLOR_DARK_BLUE"
    assert enum("echo_model.v1.Level").values_by_number[response.level].name == "LEVEL_HIGH"
    assert (
        enum("echo_model.v1.PredictResponseMode").values_by_number[response.mode].name
        == "PREDICT_RESPONSE_MODE_SLOW"
    )
    assert response.HasField("point") and response.point.x == 0.0 and response.point.HasField("x")
    assert response.point.y == 0.0 and not response.point.HasField("label")
    assert [(p.x, p.y, p.label, p.HasField("label")) for p in response.points] == [
        (1.0, 2.0, "", True),
        (3.0, 0.0, "", False),
    ]
    assert list(response.tags) == ["a", "", "c"]
    assert dict(response.weights) == {"w": 0.0, "v": 1.5}
    assert [list(row.values) for row in response.matrix] == [[1.0, 2.0], []]
    assert {k: list(v.values) for k, v in response.groups.items()} == {"g": [1, 2, 3]}
    assert response.when.ToDatetime(tzinfo=UTC) == when
    assert response.wait.ToTimedelta() == timedelta(seconds=90, microseconds=5)


def test_unspecified_enum_counts_as_absent(echo_tree: ProtoTree, echo: Any) -> None:
    _, channel = echo
    response = echo_call(echo_tree, channel, name="n", color=0)
    assert "color" not in response.fields_set
    assert (
        response.color
        == echo_tree.pool.FindEnumTypeByName("echo_model.v1.Color").values_by_name["COLOR_RED"].number
    )


def test_enum_number_this_release_does_not_know_is_invalid(echo_tree: ProtoTree, echo: Any) -> None:
    _, channel = echo
    with pytest.raises(grpc.RpcError) as caught:
        echo_call(echo_tree, channel, name="n", color=42)
    code, details, violations = status_of(caught.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert violations == [("color", '42 is not a value of enum "echo_model.v1.Color" this release knows')]
    assert details == f"invalid request: {violations[0][0]}: {violations[0][1]}"


def test_model_that_raises_is_internal_with_request_id(
    echo_tree: ProtoTree, echo: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, channel = echo
    with pytest.raises(grpc.RpcError) as caught:
        echo_call(echo_tree, channel, name="n", fail=True)
    error = caught.value
    assert error.code() == grpc.StatusCode.INTERNAL
    trailing = dict(error.trailing_metadata() or ())  # type: ignore[attr-defined]
    request_id = trailing["request-id"]
    assert request_id in (error.details() or "")
    assert "asked to fail" not in (error.details() or "")  # no internals leak to the client
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback is in the log
    assert echo_call(echo_tree, channel, name="after").name == "after"


def test_oversized_message_is_resource_exhausted(echo_tree: ProtoTree, echo: Any) -> None:
    _, channel = echo
    with pytest.raises(grpc.RpcError) as caught:
        echo_call(echo_tree, channel, name="x" * (128 * 1024))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert echo_call(echo_tree, channel, name="small").name == "small"


def test_deadline_is_honoured(echo_tree: ProtoTree, echo: Any) -> None:
    _, channel = echo
    with pytest.raises(grpc.RpcError) as caught:
        echo_call(echo_tree, channel, timeout=0.2, name="slow", sleep=1.0)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert echo_call(echo_tree, channel, name="next").name == "next"


# -- streaming --------------------------------------------------------------------------------


def _stream(echo_tree: ProtoTree, channel: grpc.Channel, names: list[str | None]) -> list[Any]:
    item = _cls(echo_tree, "echo_model.v1.PredictStreamRequest")
    request = _cls(echo_tree, "echo_model.v1.PredictRequest")
    out = _cls(echo_tree, "echo_model.v1.PredictStreamResponse")
    items = [
        item(request=request(name=n) if n is not None else request(count=1)).SerializeToString()
        for n in names
    ]
    call = channel.stream_stream(f"{ECHO}/PredictStream")
    return [out.FromString(data) for data in call(iter(items))]


def test_stream_answers_each_request_in_order(echo_tree: ProtoTree, echo: Any) -> None:
    _, channel = echo
    names = [f"item-{i}" for i in range(25)] + [""]
    responses = _stream(echo_tree, channel, list(names))
    assert [r.response.name for r in responses] == names


def test_invalid_stream_item_ends_stream_naming_index(echo_tree: ProtoTree, echo: Any) -> None:
    _, channel = echo
    with pytest.raises(grpc.RpcError) as caught:
        _stream(echo_tree, channel, ["a", "b", None, "d"])
    code, details, violations = status_of(caught.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "item 2" in details
    assert violations == [("[2].request.name", "Field required")]
    assert echo_call(echo_tree, channel, name="after").name == "after"


def test_garbage_stream_item_is_invalid_argument(echo_tree: ProtoTree, echo: Any) -> None:
    _, channel = echo
    call = channel.stream_stream(f"{ECHO}/PredictStream")
    with pytest.raises(grpc.RpcError) as caught:
        list(call(iter([b"\xff\xff\xff"])))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "item 0" in (caught.value.details() or "")


def test_protos_dir_is_only_read(tmp_path: Path) -> None:
    protos = register_models(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "protos", [EchoModel])
    before = {p: p.read_bytes() for p in protos.rglob("*") if p.is_file()}
    with running([EchoModel], protos):
        pass
    assert {p: p.read_bytes() for p in protos.rglob("*") if p.is_file()} == before
