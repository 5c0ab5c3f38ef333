"""Access: the bearer token of ``--auth-token-file``, and model names that cannot leave ``proto_versions/``.

TLS and mutual TLS, with certificates the tests make, are in ``test_service_cli.py``.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from grpc_health.v1 import health_pb2
from hypothesis import given, settings
from hypothesis import strategies as st
from iris_model import IrisModel

from protoreg.cli import main
from protoreg.registry.database import open_registry
from protoreg.registry.errors import SchemaError
from protoreg.registry.naming import MODEL_NAME
from protoreg.registry.registration import register_release
from protoreg.registry.render import render_tree
from protoreg.registry.schema import extract_schema
from protoreg.service.auth import AuthTokenError, read_token
from protoreg.service.compile import ProtoTree, load_protos
from tests.service_support import (
    Method,
    Point,
    raw_call,
    register_models,
    repo_protos,
    running,
    send,
    server_methods,
    start_serve,
    stop_process,
)

TOKEN = "s3cr3t-t0ken.with_~symbols+/="
SETOSA = json.dumps({"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2})
IRIS_PREDICT = "/iris_model.v1.IrisModelService/Predict"
IRIS_SERVER_SERVICES = {  # what a server of the committed proto_versions/ offers
    "iris_model.v1.IrisModelService",
    "protoreg.registry.v1.RegistryService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
}


@pytest.fixture(scope="module")
def tree() -> ProtoTree:
    return repo_protos()


@pytest.fixture(scope="module")
def address(tree: ProtoTree) -> Iterator[str]:
    with running([IrisModel], tree, auth_token=TOKEN) as (_server, address):
        yield address


def _iris_request(tree: ProtoTree) -> bytes:
    cls = tree.message_class("iris_model.v1.PredictRequest")
    return cls(**json.loads(SETOSA)).SerializeToString()  # type: ignore[no-any-return]


def _code(channel: grpc.Channel, method: str, payload: bytes, metadata: list[tuple[str, str]]) -> grpc.StatusCode:
    try:
        channel.unary_unary(method)(payload, timeout=30, metadata=metadata)
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


# -- the bearer token ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ([], grpc.StatusCode.UNAUTHENTICATED),
        ([("authorization", "Bearer wrong")], grpc.StatusCode.UNAUTHENTICATED),
        ([("authorization", f"Bearer {TOKEN}x")], grpc.StatusCode.UNAUTHENTICATED),
        ([("authorization", f"Bearer {TOKEN[:-1]}")], grpc.StatusCode.UNAUTHENTICATED),
        ([("authorization", TOKEN)], grpc.StatusCode.UNAUTHENTICATED),  # no scheme
        ([("authorization", f"Basic {TOKEN}")], grpc.StatusCode.UNAUTHENTICATED),
        ([("x-token", TOKEN)], grpc.StatusCode.UNAUTHENTICATED),
        ([("authorization", f"Bearer {TOKEN}"), ("authorization", "Bearer wrong")], grpc.StatusCode.UNAUTHENTICATED),
        ([("authorization", f"Bearer {TOKEN}")], grpc.StatusCode.OK),
        ([("authorization", f"bearer {TOKEN}")], grpc.StatusCode.OK),  # the scheme is case-insensitive
    ],
)
def test_predict_needs_the_bearer_token(
    tree: ProtoTree, address: str, metadata: list[tuple[str, str]], expected: grpc.StatusCode
) -> None:
    with grpc.insecure_channel(address) as channel:
        assert _code(channel, IRIS_PREDICT, _iris_request(tree), metadata) == expected


def test_every_method_but_health_is_protected(tree: ProtoTree, address: str) -> None:
    """Reflection, the registry service and health's List too; and an unknown method is
    UNAUTHENTICATED, not UNIMPLEMENTED, so a caller without the token cannot probe what the
    server has. Health's Check and Watch of the overall status (``service=""``) stay open."""
    methods = [m for m in server_methods(tree) if m.path.split("/")[1] in IRIS_SERVER_SERVICES]
    methods.append(Method("/nope.v1.NopeService/Nope", tree.message_class("protoreg.registry.v1.ListModelsRequest"),
                          False, False))
    assert len(methods) >= 10
    with grpc.insecure_channel(address) as channel:
        for method in methods:
            code, details = send(channel, method, [b""])
            if method.path in ("/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"):
                assert code == grpc.StatusCode.OK, (method.path, details)  # the overall status only
            else:
                assert code == grpc.StatusCode.UNAUTHENTICATED, (method.path, code, details)
                assert "bearer token" in details and TOKEN not in details


def test_with_the_token_every_method_answers(tree: ProtoTree, address: str) -> None:
    header = [("authorization", f"Bearer {TOKEN}")]
    with grpc.insecure_channel(address) as channel:
        assert _code(channel, IRIS_PREDICT, _iris_request(tree), header) == grpc.StatusCode.OK
        assert _code(channel, "/protoreg.registry.v1.RegistryService/ListModels", b"", header) == grpc.StatusCode.OK
        assert _code(channel, "/nope.v1.NopeService/Nope", b"", header) == grpc.StatusCode.UNIMPLEMENTED
        stream = channel.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
        from grpc_reflection.v1alpha import reflection_pb2

        request = reflection_pb2.ServerReflectionRequest(list_services="").SerializeToString()
        (listing,) = list(stream(iter([request]), timeout=30, metadata=header))
        services = reflection_pb2.ServerReflectionResponse.FromString(listing).list_services_response.service
        assert "iris_model.v1.IrisModelService" in {s.name for s in services}


def test_health_is_exempt(address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        data = raw_call(channel, "/grpc.health.v1.Health/Check", b"", timeout=30)
    assert health_pb2.HealthCheckResponse.FromString(data).status == health_pb2.HealthCheckResponse.SERVING


def test_without_a_token_nothing_is_asked(tree: ProtoTree) -> None:
    with running([IrisModel], tree) as (_server, address), grpc.insecure_channel(address) as channel:
        assert _code(channel, IRIS_PREDICT, _iris_request(tree), []) == grpc.StatusCode.OK


# -- the token file, and the commands -----------------------------------------------------------


def _token_file(tmp_path: Path, content: str, mode: int = 0o600) -> Path:
    path = tmp_path / "token"
    path.write_text(content)
    path.chmod(mode)
    return path


def test_predict_sends_the_token_from_its_file(address: str, tmp_path: Path) -> None:
    token_file = _token_file(tmp_path, f"{TOKEN}\n")
    ok = CliRunner().invoke(main, ["predict", "iris_model", "--address", address, "--json", SETOSA,
                                   "--auth-token-file", str(token_file)])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout) == {"species": "SPECIES_SETOSA"}
    refused = CliRunner().invoke(main, ["predict", "iris_model", "--address", address, "--json", SETOSA])
    assert refused.exit_code == 1
    assert refused.stderr.startswith("Error: UNAUTHENTICATED: reflection failed at")
    wrong = _token_file(tmp_path, "not-the-token")
    refused = CliRunner().invoke(main, ["predict", "iris_model", "--address", address, "--json", SETOSA,
                                        "--auth-token-file", str(wrong)])
    assert refused.exit_code == 1 and "UNAUTHENTICATED" in refused.stderr


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "does not exist"),
        ("", "is empty"),
        ("  \n\n", "is empty"),
        ("two words", "without spaces or line breaks inside it"),
        ("line\nbreak", "without spaces or line breaks inside it"),
        ("caf\u00e9", "visible ASCII"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "predict"])
def test_a_bad_token_file_is_refused_in_one_sentence(
    tmp_path: Path, content: str | None, problem: str, command: str
) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    args = ["iris_model", "--auth-token-file", str(path)]
    args += ["--address", "127.0.0.1:0"] if command == "serve" else ["--json", "{}", "--address", "127.0.0.1:1"]
    result = CliRunner().invoke(main, ["--protos", str(tmp_path / "nowhere"), command, *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"Error: auth token file {path} ")
    assert problem in result.stderr and "openssl rand -hex 32" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_world_readable_token_file_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="protoreg.service"):
        assert read_token(_token_file(tmp_path, f"  {TOKEN}\n", 0o644)) == TOKEN
    assert "readable by every user" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="protoreg.service"):
        assert read_token(_token_file(tmp_path, TOKEN, 0o600)) == TOKEN
    assert not caplog.text


def test_a_directory_is_not_a_token_file(tmp_path: Path) -> None:
    with pytest.raises(AuthTokenError, match="cannot read auth token file"):
        read_token(tmp_path)


def test_serve_with_a_token_file_end_to_end(tmp_path: Path) -> None:
    """``protoreg serve --auth-token-file`` in a subprocess, called by ``protoreg predict``."""
    protos = tmp_path / "protos"
    shutil.copytree(Path(__file__).resolve().parent.parent / "proto_versions", protos)
    token_file = _token_file(tmp_path, TOKEN)
    process, address = start_serve(protos, ["iris_model"], "--auth-token-file", str(token_file))
    try:
        base = ["predict", "iris_model", "--address", address, "--json", SETOSA]
        ok = CliRunner().invoke(main, [*base, "--auth-token-file", str(token_file)])
        assert ok.exit_code == 0 and json.loads(ok.stdout) == {"species": "SPECIES_SETOSA"}, ok.output
        refused = CliRunner().invoke(main, base)
        assert refused.exit_code == 1 and "UNAUTHENTICATED" in refused.stderr
        with grpc.insecure_channel(address) as channel:  # health stays open for probes
            data = raw_call(channel, "/grpc.health.v1.Health/Check", b"", timeout=30)
        assert health_pb2.HealthCheckResponse.FromString(data).status == health_pb2.HealthCheckResponse.SERVING
    finally:
        stop_process(process)


# -- model names and paths ----------------------------------------------------------------------


TRICKY_NAMES = [
    "../../etc/passwd", "..", ".", "/etc/passwd", "a/b", "a\\b", "iris_model/../x", "x\x00y", "~root",
    "a..b", "a.b", "", " ", "a b", "Iris", "_x", "x_", "x__y", "1x", "%2e%2e", "x\n/../../y",
]


def _named(name: str) -> type:
    """A model class declaring ``qualified_name = name`` (any string, NUL included)."""
    return type("NamedModel", (), {
        "qualified_name": name, "display_name": "Named", "description": "A model with any name.",
        "version": "1.0.0", "input_schema": Point, "output_schema": Point,
    })


@pytest.fixture(scope="module")
def name_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield f"sqlite:///{tmp_path_factory.mktemp('names') / 'r.db'}"


@settings(max_examples=60, deadline=None, database=None)
@given(name=st.one_of(st.sampled_from(TRICKY_NAMES), st.text(max_size=12),
                      st.from_regex(r"[a-z][a-z0-9_./\\]{0,10}", fullmatch=True)))
def test_no_accepted_model_name_renders_a_path_outside_proto_versions(name_registry: str, name: str) -> None:
    """Whatever name a model declares, either it is refused or every file rendered for it lies
    inside ``proto_versions/`` (checked on the paths ``render_tree`` returns, resolved)."""
    model = _named(name)
    try:
        schema = extract_schema(model)
    except SchemaError:
        return
    assert MODEL_NAME.match(name)
    assert "/" not in name and "\\" not in name and "." not in name and "\x00" not in name
    root = Path("/srv/proto_versions")
    with open_registry(name_registry) as registry:
        register_release(registry, schema)
        files = render_tree(registry.served_packages())
    for file in files:
        target = (root / file.path).resolve()
        assert target.is_relative_to(root), file.path


@pytest.mark.parametrize("name", [n for n in TRICKY_NAMES if "\n" not in n])
def test_tricky_model_names_are_refused(name: str) -> None:
    with pytest.raises(SchemaError, match="must be lower_snake_case"):
        extract_schema(_named(name))


def test_a_model_name_with_a_final_newline_is_refused() -> None:
    with pytest.raises(SchemaError, match="must be lower_snake_case"):
        extract_schema(_named("iris_model\n"))


@pytest.fixture(scope="module")
def protos_gone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProtoTree, grpc.Channel]]:
    """A server whose ``proto_versions/`` was deleted once it started."""
    tmp = tmp_path_factory.mktemp("gone")
    protos = register_models(f"sqlite:///{tmp / 'r.db'}", tmp / "protos", [IrisModel])
    tree = load_protos(protos)
    with running([IrisModel], tree) as (_server, address), grpc.insecure_channel(address) as channel:
        shutil.rmtree(protos)
        yield tree, channel


@pytest.mark.parametrize("method", ["ListReleases", "GetFieldMap", "GetProto"])
@pytest.mark.parametrize("name", ["../../etc/passwd", "iris_model/../../../etc/passwd", "/etc/passwd",
                                  "iris_model/v1/iris_model.proto", "..", "iris_model\n"])
def test_the_registry_service_reads_no_file_for_a_model_name(
    protos_gone: tuple[ProtoTree, grpc.Channel], method: str, name: str
) -> None:
    """The registry service answers from what it loaded at start-up: with ``proto_versions/`` gone
    it still returns the served text, and a path as a model name is INVALID_ARGUMENT."""
    tree, channel = protos_gone
    path = f"/protoreg.registry.v1.RegistryService/{method}"
    request = tree.message_class(f"protoreg.registry.v1.{method}Request")(model=name)
    with pytest.raises(grpc.RpcError) as caught:
        raw_call(channel, path, request.SerializeToString(), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "root:" not in (caught.value.details() or "")
    ok = tree.message_class(f"protoreg.registry.v1.{method}Request")(model="iris_model")
    data = raw_call(channel, path, ok.SerializeToString(), timeout=30)
    if method == "GetProto":
        content = tree.message_class("protoreg.registry.v1.GetProtoResponse").FromString(data).content
        assert content.startswith("// Code generated by protoreg") and "package iris_model.v1;" in content
