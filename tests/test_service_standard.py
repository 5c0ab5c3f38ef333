"""The standard services: health, reflection (v1alpha and v1), and the protoreg registry service."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from iris_model import IrisModel

from protoreg.service.compile import ProtoTree
from tests.service_support import REPO, EchoModel, raw_call, repo_protos, running

IRIS_SERVICE = "iris_model.v1.IrisModelService"
REGISTRY_SERVICE = "protoreg.registry.v1.RegistryService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def tree() -> ProtoTree:
    return repo_protos()


@pytest.fixture(scope="module")
def channel(tree: ProtoTree) -> Iterator[grpc.Channel]:
    with running([IrisModel], tree) as (_server, address), grpc.insecure_channel(address) as channel:
        yield channel


# -- health -----------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["", IRIS_SERVICE, REGISTRY_SERVICE])
def test_health_is_serving_once_loaded(channel: grpc.Channel, service: str) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    assert stub.Check(health_pb2.HealthCheckRequest(service=service)).status == SERVING


def test_health_of_an_unknown_service_is_not_found(channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Check(health_pb2.HealthCheckRequest(service="nope.v1.NopeService"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_turns_not_serving_when_shutdown_begins(tree: ProtoTree) -> None:
    with running([IrisModel], tree) as (server, address), grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        watches = {
            name: stub.Watch(health_pb2.HealthCheckRequest(service=name)) for name in ("", IRIS_SERVICE)
        }
        firsts = {name: next(watch).status for name, watch in watches.items()}
        assert firsts == {"": SERVING, IRIS_SERVICE: SERVING}
        stopper = threading.Thread(target=server.stop, args=(5.0,))
        stopper.start()
        seconds = {name: next(watch).status for name, watch in watches.items()}
        for watch in watches.values():
            watch.cancel()  # a watch is an in-flight call: it would hold the server for the grace
        stopper.join()
    assert seconds == {"": NOT_SERVING, IRIS_SERVICE: NOT_SERVING}


def test_health_watch_streams_are_capped_so_they_cannot_starve_the_models(tree: ProtoTree) -> None:
    # 16 streams -> at most 2 watchers; health needs no token, so an uncapped Watch is a cheap DoS.
    with running([IrisModel], tree, max_streams=16) as (_server, address), grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        watches = [stub.Watch(health_pb2.HealthCheckRequest(service="")) for _ in range(2)]
        assert [next(w).status for w in watches] == [SERVING, SERVING]
        with pytest.raises(grpc.RpcError) as caught:
            next(stub.Watch(health_pb2.HealthCheckRequest(service="")))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "poll with Check" in (caught.value.details() or "")
        assert stub.Check(health_pb2.HealthCheckRequest(service="")).status == SERVING
        watches[0].cancel()
        for _ in range(50):  # the slot frees once the server sees the cancellation
            try:
                again = stub.Watch(health_pb2.HealthCheckRequest(service=""))
                assert next(again).status == SERVING
                again.cancel()
                break
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                threading.Event().wait(0.1)
        else:
            pytest.fail("a cancelled Watch never gave its slot back")
        watches[1].cancel()


# -- reflection -------------------------------------------------------------------------------


def test_reflection_lists_every_service(channel: grpc.Channel) -> None:
    services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert services == {
        IRIS_SERVICE,
        REGISTRY_SERVICE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }


def test_reflection_resolves_the_model_file_and_describes_it(channel: grpc.Channel) -> None:
    stub = channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=IRIS_SERVICE)
    (response,) = list(stub(iter([request])))
    from google.protobuf import descriptor_pb2

    files = [
        descriptor_pb2.FileDescriptorProto.FromString(b)
        for b in response.file_descriptor_response.file_descriptor_proto
    ]
    (file,) = [f for f in files if f.package == "iris_model.v1"]
    assert file.name == "iris_model/v1/iris_model.proto"
    assert [m.name for m in file.service[0].method] == ["Predict", "PredictStream"]
    request_message = next(m for m in file.message_type if m.name == "PredictRequest")
    assert [(f.name, f.number, f.proto3_optional) for f in request_message.field] == [
        ("sepal_length", 1, True),
        ("sepal_width", 2, True),
        ("petal_length", 3, True),
        ("petal_width", 4, True),
    ]


@pytest.mark.parametrize("version", ["v1alpha", "v1"])
def test_reflection_alone_is_enough_to_call_predict(channel: grpc.Channel, version: str) -> None:
    """What grpcurl does: no .proto file, only what reflection sends."""
    stub = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    (listing,) = list(stub(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    assert IRIS_SERVICE in [s.name for s in listing.list_services_response.service]
    (found,) = list(stub(iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=IRIS_SERVICE)])))
    pool = descriptor_pool.DescriptorPool()
    pending = list(found.file_descriptor_response.file_descriptor_proto)
    while pending:  # add files once their dependencies are in
        for data in list(pending):
            try:
                pool.AddSerializedFile(data)
            except TypeError:
                continue
            pending.remove(data)
    method = pool.FindServiceByName(IRIS_SERVICE).methods_by_name["Predict"]
    request = json_format.Parse(
        json.dumps({"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}),
        message_factory.GetMessageClass(method.input_type)(),
    )
    data = raw_call(channel, f"/{IRIS_SERVICE}/Predict", request.SerializeToString())
    response = message_factory.GetMessageClass(method.output_type).FromString(data)
    assert json_format.MessageToDict(response) == {"species": "SPECIES_SETOSA"}


def test_reflection_describes_the_standard_services(channel: grpc.Channel) -> None:
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    for name in ("grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", REGISTRY_SERVICE):
        assert pool.FindServiceByName(name).methods


# -- registry service -------------------------------------------------------------------------


def _registry_call(tree: ProtoTree, channel: grpc.Channel, method: str, **fields: Any) -> Any:
    request = tree.message_class(f"protoreg.registry.v1.{method}Request")(**fields)
    data = raw_call(channel, f"/{REGISTRY_SERVICE}/{method}", request.SerializeToString())
    return tree.message_class(f"protoreg.registry.v1.{method}Response").FromString(data)


def test_registry_lists_models_and_releases(tree: ProtoTree, channel: grpc.Channel) -> None:
    response = _registry_call(tree, channel, "ListModels")
    assert json_format.MessageToDict(response, preserving_proto_field_name=True) == {
        "models": [
            {
                "name": "iris_model",
                "display_name": "Iris Model",
                "description": IrisModel.description,
                "releases": [
                    {
                        "major": 1,
                        "version": "1.0.0",
                        "package": "iris_model.v1",
                        "service": IRIS_SERVICE,
                        "proto_path": "iris_model/v1/iris_model.proto",
                    }
                ],
            }
        ]
    }
    releases = _registry_call(tree, channel, "ListReleases", model="iris_model")
    assert [r.version for r in releases.releases] == ["1.0.0"]


def test_registry_field_map(tree: ProtoTree, channel: grpc.Channel) -> None:
    response = _registry_call(tree, channel, "GetFieldMap", model="iris_model")
    messages = {m.name: [(f.name, f.number, f.type, f.label) for f in m.fields] for m in response.messages}
    assert messages["PredictRequest"][0] == ("sepal_length", 1, "double", "optional")
    assert messages["PredictResponse"] == [("species", 1, "Species", "optional")]
    (species,) = response.enums
    assert [(v.name, v.number) for v in species.values] == [
        ("SPECIES_UNSPECIFIED", 0),
        ("SPECIES_SETOSA", 1),
        ("SPECIES_VERSICOLOR", 2),
        ("SPECIES_VIRGINICA", 3),
    ]


def test_registry_returns_the_exact_proto_text(tree: ProtoTree, channel: grpc.Channel) -> None:
    response = _registry_call(tree, channel, "GetProto", model="iris_model", major=1)
    assert response.content == (REPO / "proto_versions/iris_model/v1/iris_model.proto").read_text()
    assert response.release.version == "1.0.0"


@pytest.mark.parametrize("fields", [{"model": "nope"}, {"model": "iris_model", "major": 7}])
def test_registry_unknown_model_or_major_is_not_found(
    tree: ProtoTree, channel: grpc.Channel, fields: dict[str, Any]
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _registry_call(tree, channel, "GetProto", **fields)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_service_never_imports_sqlalchemy_or_the_store() -> None:
    code = (
        "import sys\n"
        "import protoreg.service, protoreg.service.compile, protoreg.service.convert, "
        "protoreg.service.binding, protoreg.service.server, protoreg.service.client, protoreg.service.commands\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'alembic') "
        "or m == 'protoreg.registry.store')\n"
        "print(bad)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip() == "[]"


def test_echo_model_serves_alongside_iris(tmp_path: Any) -> None:
    """Two models in one server: each service answers, reflection lists both."""
    from tests.service_support import register_models

    protos = register_models(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "protos", [EchoModel, IrisModel])
    with running([EchoModel, IrisModel], protos) as (server, address), grpc.insecure_channel(address) as ch:
        services = set(ProtoReflectionDescriptorDatabase(ch).get_services())
        assert {"echo_model.v1.EchoModelService", IRIS_SERVICE} <= services
        assert [m.name for m in server.models] == ["echo_model", "iris_model"]
