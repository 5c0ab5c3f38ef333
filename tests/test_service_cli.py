"""``protoreg predict`` and ``protoreg serve``: the reflection client, TLS, mutual TLS, SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from iris_model import IrisModel

from protoreg.cli import main
from protoreg.service.compile import ProtoTree, load_protos
from protoreg.service.server import ServeError
from tests.service_support import REPO, EchoModel, raw_call, register_models, repo_protos, running

ZEROS = json.dumps({"sepal_length": 0, "sepal_width": 0, "petal_length": 0, "petal_width": 0})
SETOSA = json.dumps({"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2})


@pytest.fixture(scope="module")
def tree() -> ProtoTree:
    return repo_protos()


@pytest.fixture(scope="module")
def address(tree: ProtoTree) -> Iterator[str]:
    with running([IrisModel], tree) as (_server, address):
        yield address


def predict(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["predict", *args])
    return result.exit_code, result.stdout, result.stderr


# -- predict ----------------------------------------------------------------------------------


def test_predict_prints_the_response_as_json(address: str) -> None:
    code, out, _ = predict("iris_model", "--address", address, "--json", SETOSA)
    assert code == 0
    assert json.loads(out) == {"species": "SPECIES_SETOSA"}


def test_predict_all_zero_input(address: str) -> None:
    code, out, _ = predict("iris_model", "--address", address, "--major", "1", "--json", ZEROS)
    assert code == 0
    assert json.loads(out)["species"].startswith("SPECIES_")


def test_predict_reports_the_status_and_fails(address: str) -> None:
    code, out, err = predict("iris_model", "--address", address, "--json", '{"sepal_length": -1}')
    assert code == 1
    assert out == ""
    assert err.startswith("Error: INVALID_ARGUMENT: invalid request: sepal_length:")
    assert "petal_width: Field required" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope_model", "--json", "{}"], 'serves no model "nope_model"'),
        (["iris_model", "--major", "2", "--json", "{}"], "major lines 1, not 2"),
        (["iris_model", "--json", '{"petals": 1}'], "--json is not a valid iris_model.v1.PredictRequest"),
    ],
)
def test_predict_usage_errors(address: str, args: list[str], message: str) -> None:
    code, _, err = predict(*args, "--address", address)
    assert code == 2
    assert message in err


def test_predict_without_a_server_fails_with_unavailable() -> None:
    code, _, err = predict("iris_model", "--address", "127.0.0.1:1", "--json", ZEROS, "--timeout", "5")
    assert code == 1
    assert "UNAVAILABLE" in err


def test_readme_documents_serve_and_predict() -> None:
    readme = (REPO / "README.md").read_text()
    for command in ("serve", "predict"):
        assert f"`protoreg {command} " in readme
        result = CliRunner().invoke(main, [command, "--help"])
        assert result.exit_code == 0
        options = set(re.findall(r"--[a-z][a-z-]*", result.output)) - {"--help"}
        missing = sorted(o for o in options if o not in readme)
        assert not missing, f"README lacks {missing} of protoreg {command}"


def test_serve_refuses_an_address_in_use(tree: ProtoTree, address: str) -> None:
    with pytest.raises(ServeError, match=f"cannot listen on {address}"):
        with running([IrisModel], tree, address=address):
            pass


# -- TLS --------------------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl."""
    tmp = tmp_path_factory.mktemp("certs")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=test ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=keyCertSign,cRLSign",
        cwd=tmp,
    )
    for name, extensions in (
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ):
        (tmp / f"{name}.ext").write_text(extensions)
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=tmp)
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.pem",
            "-days",
            "2",
            "-extfile",
            f"{name}.ext",
            cwd=tmp,
        )
    return tmp


def test_tls(tree: ProtoTree, certs: Path) -> None:
    tls = {"tls_cert": certs / "server.pem", "tls_key": certs / "server.key"}
    with running([IrisModel], tree, **tls) as (_server, address):
        code, out, err = predict(
            "iris_model", "--address", address, "--tls-ca", str(certs / "ca.pem"), "--json", SETOSA
        )
        assert (code, json.loads(out or "{}")) == (0, {"species": "SPECIES_SETOSA"}), err
        with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as caught:
            raw_call(channel, "/iris_model.v1.IrisModelService/Predict", b"", timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_requires_a_client_certificate(tree: ProtoTree, certs: Path) -> None:
    tls = {
        "tls_cert": certs / "server.pem",
        "tls_key": certs / "server.key",
        "tls_client_ca": certs / "ca.pem",
    }
    ca = str(certs / "ca.pem")
    with running([IrisModel], tree, **tls) as (_server, address):
        code, _, err = predict(
            "iris_model", "--address", address, "--tls-ca", ca, "--json", SETOSA, "--timeout", "10"
        )
        assert code == 1 and "UNAVAILABLE" in err
        code, out, err = predict(
            "iris_model",
            "--address",
            address,
            "--tls-ca",
            ca,
            "--tls-cert",
            str(certs / "client.pem"),
            "--tls-key",
            str(certs / "client.key"),
            "--json",
            SETOSA,
        )
        assert (code, json.loads(out or "{}")) == (0, {"species": "SPECIES_SETOSA"}), err


def test_mutual_tls_refuses_a_client_certificate_from_another_ca(
    tree: ProtoTree, certs: Path, tmp_path: Path
) -> None:
    """A client certificate that is well-formed but signed by a CA the server does not trust."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "rogue.key", "-out", "rogue.pem", "-days", "2",
             "-subj", "/CN=rogue", "-addext", "extendedKeyUsage=clientAuth", cwd=tmp_path)
    tls = {"tls_cert": certs / "server.pem", "tls_key": certs / "server.key", "tls_client_ca": certs / "ca.pem"}
    with running([IrisModel], tree, **tls) as (_server, address):
        code, _, err = predict(
            "iris_model", "--address", address, "--tls-ca", str(certs / "ca.pem"),
            "--tls-cert", str(tmp_path / "rogue.pem"), "--tls-key", str(tmp_path / "rogue.key"),
            "--json", SETOSA, "--timeout", "10",
        )
        assert code == 1 and "UNAVAILABLE" in err


def test_tls_and_a_bearer_token_together(tree: ProtoTree, certs: Path, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("tls-and-token\n")
    token.chmod(0o600)
    tls = {"tls_cert": certs / "server.pem", "tls_key": certs / "server.key"}
    base = ["iris_model", "--tls-ca", str(certs / "ca.pem"), "--json", SETOSA]
    with running([IrisModel], tree, auth_token="tls-and-token", **tls) as (_server, address):
        code, out, err = predict(*base, "--address", address, "--auth-token-file", str(token))
        assert (code, json.loads(out or "{}")) == (0, {"species": "SPECIES_SETOSA"}), err
        code, _, err = predict(*base, "--address", address)
        assert code == 1 and "UNAUTHENTICATED" in err


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({"--tls-cert": "server.pem", "--tls-key": "client.key"},
         "--tls-key {client.key} is not the private key of the certificate in --tls-cert {server.pem}"),
        ({"--tls-cert": "junk.pem", "--tls-key": "server.key"}, "--tls-cert {junk.pem} is not a PEM file"),
        ({"--tls-cert": "server.pem", "--tls-key": "server.key", "--tls-client-ca": "fake-ca.pem"},
         "--tls-client-ca {fake-ca.pem} holds no usable CA certificate"),
        ({"--tls-cert": "server.pem", "--tls-key": "server.key", "--tls-client-ca": "junk.pem"},
         "--tls-client-ca {junk.pem} is not a PEM file"),
    ],
)
def test_a_bad_tls_file_is_named_before_anything_binds(
    certs: Path, tmp_path: Path, files: dict[str, str], problem: str
) -> None:
    (tmp_path / "junk.pem").write_text("not a certificate at all\n")
    (tmp_path / "fake-ca.pem").write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    paths = {name: (certs / name if (certs / name).exists() else tmp_path / name) for name in files.values()}
    args = [arg for flag, name in files.items() for arg in (flag, str(paths[name]))]
    result = CliRunner().invoke(main, ["--protos", str(REPO / "proto_versions"), "serve", "iris_model",
                                       "--address", "127.0.0.1:0", *args])
    assert result.exit_code == 2, result.output
    for name, path in paths.items():
        problem = problem.replace(f"{{{name}}}", str(path))
    assert problem in result.output
    assert "another server" not in result.output and "Traceback" not in result.output


# -- serve in a subprocess: SIGTERM drains in-flight calls --------------------------------------


def _start_serve(protos: Path, *refs: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "protoreg"),
            "--protos",
            str(protos),
            "serve",
            *refs,
            "--address",
            "127.0.0.1:0",
            "--grace",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=protos.parent,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("listening on "):
            return process, line.split()[2]
    process.wait()
    raise AssertionError(
        f"serve did not start: {''.join(lines)}{process.stderr.read() if process.stderr else ''}"
    )


def test_sigterm_drains_in_flight_calls_and_exits_zero(tmp_path: Path) -> None:
    protos = register_models(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "protos", [EchoModel])
    process, address = _start_serve(protos, "tests.service_support:EchoModel")
    try:
        marker = tmp_path / "started"
        tree = load_protos(protos)
        request = tree.message_class("echo_model.v1.PredictRequest")(
            name="in flight", sleep=1.0, started_marker=str(marker)
        )
        with grpc.insecure_channel(address) as channel:
            future = channel.unary_unary("/echo_model.v1.EchoModelService/Predict").future(
                request.SerializeToString()
            )
            while not marker.exists():  # wait until the model is running the call
                assert not future.done(), future.exception()
                time.sleep(0.01)
            process.send_signal(signal.SIGTERM)
            response = tree.message_class("echo_model.v1.PredictResponse").FromString(future.result())
        assert response.name == "in flight"
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        assert "shutting down" in out and out.rstrip().endswith("stopped")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
