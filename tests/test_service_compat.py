"""Old clients keep working, two major lines serve at once, and a stale rendering is refused."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from click.testing import CliRunner
from google.protobuf import unknown_fields

from protoreg.cli import main
from protoreg.registry.protoc import compile_python
from protoreg.service.binding import ReleaseMismatchError
from protoreg.service.compile import load_protos
from protoreg.service.server import create_server
from tests.service_support import (
    Evolve100,
    Evolve100Changed,
    Evolve110,
    Evolve120,
    Evolve200,
    raw_call,
    register_models,
    running,
)


@pytest.fixture(scope="module")
def evolved(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """evolve_model 1.0.0, 1.1.0, 1.2.0 and 2.0.0 registered by `protoreg register`, rendered.

    Going through the command runs the compatibility gate too: each release declares a big
    enough bump (1.2.0 removes an input field, which needs only a minor one).
    """
    tmp = tmp_path_factory.mktemp("evolve")
    db, protos = f"sqlite:///{tmp / 'registry.db'}", tmp / "protos"
    for model in (Evolve100, Evolve110, Evolve120, Evolve200):
        ref = f"{model.__module__}:{model.__name__}"
        result = CliRunner().invoke(main, ["--db", db, "--protos", str(protos), "register", ref])
        assert result.exit_code == 0, result.output
        assert f"evolve_model {model.version}: registered" in result.output
    return db, protos


@pytest.fixture(scope="module")
def old_stubs(evolved: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """Python stubs compiled by protoc from the 1.0.0 rendering, as an old client has them."""
    db, _ = evolved
    tmp = tmp_path_factory.mktemp("old-client")
    result = CliRunner().invoke(
        main, ["--db", db, "render", "--release", "evolve_model==1.0.0", "--out", str(tmp / "protos")]
    )
    assert result.exit_code == 0, result.output
    text = (tmp / "protos/evolve_model/v1/evolve_model.proto").read_text()
    assert "// Release: evolve_model==1.0.0" in text and "int64 c = 3;" in text
    compile_python(tmp / "protos", tmp / "py", ["evolve_model/v1/evolve_model.proto"])
    sys.path.insert(0, str(tmp / "py"))
    try:
        pb2 = importlib.import_module("evolve_model.v1.evolve_model_pb2")
        grpc_module = importlib.import_module("evolve_model.v1.evolve_model_pb2_grpc")
        pb2.grpc = grpc_module  # type: ignore[attr-defined]
        yield pb2
    finally:
        sys.path.remove(str(tmp / "py"))


OLD_REQUESTS: list[dict[str, Any]] = [
    {"a": 1.5, "b": "x", "c": 0, "kind": "KIND_ALPHA"},
    {"a": 0.0, "b": "", "kind": "KIND_BETA"},
    {"a": -2.25, "b": "hello", "c": 40},  # c was removed in 1.2.0: the server ignores it
    {"a": 1e300, "b": "ünïcode"},
]


def test_old_release_client_gets_correct_answers_from_newer_release(
    evolved: tuple[str, Path], old_stubs: ModuleType
) -> None:
    _, protos = evolved
    pb2 = old_stubs
    with running([Evolve120], protos) as (_server, address), grpc.insecure_channel(address) as channel:
        stub = pb2.grpc.EvolveModelServiceStub(channel)
        for fields in OLD_REQUESTS:
            kind = fields.get("kind")
            request = pb2.PredictRequest(
                **{k: v for k, v in fields.items() if k != "kind"},
                **({"kind": pb2.Kind.Value(kind)} if kind else {}),
            )
            response = stub.Predict(request)
            # what 1.2.0 computes (c is gone), read through the 1.0.0 contract
            assert response.total == fields["a"]
            assert response.label == fields["b"].upper()
            assert pb2.Kind.Name(response.kind) == (kind or "KIND_ALPHA")
            assert response.HasField("total") and response.HasField("label") and response.HasField("kind")
            # the field added in 1.1.0 arrives as an unknown field, not as a decoding error
            assert [f.field_number for f in unknown_fields.UnknownFieldSet(response)] == [4]
        streamed = list(
            stub.PredictStream(
                iter(
                    pb2.PredictStreamRequest(request=pb2.PredictRequest(a=float(i), b=str(i)))
                    for i in range(5)
                )
            )
        )
        assert [(r.response.total, r.response.label) for r in streamed] == [
            (float(i), str(i)) for i in range(5)
        ]


def test_old_client_missing_required_field_gets_invalid_argument(
    evolved: tuple[str, Path], old_stubs: ModuleType
) -> None:
    _, protos = evolved
    pb2 = old_stubs
    with running([Evolve120], protos) as (_server, address), grpc.insecure_channel(address) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            pb2.grpc.EvolveModelServiceStub(channel).Predict(pb2.PredictRequest(a=1.0))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "b: Field required" in (caught.value.details() or "")


def test_two_major_lines_of_one_model_serve_at_once(evolved: tuple[str, Path]) -> None:
    _, protos = evolved
    tree = load_protos(protos)
    with (
        running([Evolve120, Evolve200], tree) as (server, address),
        grpc.insecure_channel(address) as channel,
    ):
        assert sorted(m.service_name for m in server.models) == [
            "evolve_model.v1.EvolveModelService",
            "evolve_model.v2.EvolveModelService",
        ]
        v1 = tree.message_class("evolve_model.v1.PredictRequest")(a=2.0, b="two", d=0.5)
        data = raw_call(channel, "/evolve_model.v1.EvolveModelService/Predict", v1.SerializeToString())
        answer = tree.message_class("evolve_model.v1.PredictResponse").FromString(data)
        assert (answer.total, answer.label, answer.extra) == (2.5, "TWO", "new in 1.1")
        v2 = tree.message_class("evolve_model.v2.PredictRequest")(a=2.0, b=3)
        data = raw_call(channel, "/evolve_model.v2.EvolveModelService/Predict", v2.SerializeToString())
        assert tree.message_class("evolve_model.v2.PredictResponse").FromString(data).total == 6.0


def test_an_older_installed_version_is_refused(evolved: tuple[str, Path]) -> None:
    _, protos = evolved
    with pytest.raises(ReleaseMismatchError) as caught:
        create_server([Evolve110], protos, refs=["tests.service_support:Evolve110"])
    message = str(caught.value)
    assert 'Model "evolve_model" is installed at version 1.1.0' in message
    assert "rendered from release evolve_model==1.2.0" in message
    assert "protoreg register tests.service_support:Evolve110" in message


def test_a_changed_schema_under_the_rendered_version_is_refused(tmp_path: Path) -> None:
    protos = register_models(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "protos", [Evolve100])
    with pytest.raises(ReleaseMismatchError) as caught:
        create_server([Evolve100Changed], protos)
    message = str(caught.value)
    assert "evolve_model" in message and "1.0.0" in message
    assert 'field "PredictRequest.d" is declared but not rendered' in message
    assert "protoreg register evolve_model" in message


def test_a_major_line_that_was_never_rendered_is_refused(tmp_path: Path) -> None:
    protos = register_models(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "protos", [Evolve100])
    with pytest.raises(
        ReleaseMismatchError, match=r"no rendered release .* evolve_model/v2/evolve_model.proto"
    ):
        create_server([Evolve200], protos)


def test_serve_cli_refuses_a_stale_release_without_traceback(tmp_path: Path) -> None:
    protos = register_models(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "protos", [Evolve100])
    result = CliRunner().invoke(
        main,
        ["--protos", str(protos), "serve", "tests.service_support:Evolve110", "--address", "127.0.0.1:0"],
    )
    assert result.exit_code == 1
    assert "installed at version 1.1.0" in result.output and "evolve_model==1.0.0" in result.output
    assert "protoreg register tests.service_support:Evolve110" in result.output
    assert "Traceback" not in result.output
