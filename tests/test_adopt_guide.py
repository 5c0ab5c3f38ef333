"""docs/adopt.md, followed step by step: the classic design's own client against `protoreg serve`.

Every file the guide shows is written and every command it shows is run (``protoreg`` in a real
process, in a project directory, as a user runs it; ``serve`` on a free port). After each
``serve`` the classic client (stubs compiled by protoc from the classic proto, into tmp_path)
calls the legacy path and must get the iris model's species for the same inputs and an answer for
all-zero inputs; new clients call ``iris_model.v<major>``; reflection lists the legacy service.
"""

from __future__ import annotations

import importlib
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from protoreg.registry.protoc import compile_descriptor_set, compile_python
from tests.project_support import PROTOREG

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "adopt.md"
CLASSIC = ROOT / "tests" / "fixtures" / "adopt" / "classic" / "model_grpc_service.proto"
LEGACY_PREDICT = "/model_grpc_service.ModelgRPCService/iris_model_predict"




@dataclass(frozen=True)
class Step:
    action: str  # file, edit, append, run
    target: str
    body: str


def guide_steps(text: str) -> list[Step]:
    """The marked blocks of the guide, in order: ``<!-- file: P -->``, ``<!-- edit: P -->`` (a diff
    whose hunks are separated by ``@@``), ``<!-- append: P -->`` and ``<!-- run -->``."""
    pattern = re.compile(r"<!-- (file|edit|append|run)(?:: (\S+))? -->\n```[a-z]*\n(.*?)```", re.DOTALL)
    return [Step(m[1], m[2] or "", m[3]) for m in pattern.finditer(text)]


def apply_diff(text: str, diff: str) -> str:
    for hunk in diff.split("@@\n"):
        lines = hunk.splitlines()
        old = "".join(line[1:] + "\n" for line in lines if line[:1] in (" ", "-"))
        new = "".join(line[1:] + "\n" for line in lines if line[:1] in (" ", "+"))
        assert old in text, f"the guide's edit does not apply:\n{old}"
        text = text.replace(old, new, 1)
    return text


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PROTOREG_DB")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


class Served:
    """``protoreg serve ...`` in a real process on a free port."""

    def __init__(self, root: Path, args: list[str]) -> None:
        self.process = subprocess.Popen([PROTOREG, *args, "--address", "127.0.0.1:0", "--grace", "0"], cwd=root,
                                        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.process.stdout is not None
        self.lines: list[str] = []
        for line in self.process.stdout:  # ends when the server prints its address, or exits
            self.lines.append(line.rstrip("\n"))
            if line.startswith("listening on "):
                break
        found = re.search(r"listening on [\d.]+:(\d+)", "\n".join(self.lines))
        assert found, "serve did not start:\n" + "\n".join(self.lines)
        self.address = f"127.0.0.1:{found[1]}"

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.communicate()


class Clients:
    """The classic client (generated stubs) and new clients (classes from proto_versions/)."""

    def __init__(self, tmp: Path) -> None:
        stubs = tmp / "classic_stubs"
        compile_python(CLASSIC.parent, stubs, [CLASSIC.name])
        sys.path.insert(0, str(stubs))
        self.pb = importlib.import_module("model_grpc_service_pb2")
        self.grpc = importlib.import_module("model_grpc_service_pb2_grpc")

    def new_classes(self, protos: Path, major: int) -> tuple[Any, Any]:
        descriptors = compile_descriptor_set(protos, [f"iris_model/v{major}/iris_model.proto"])
        pool = descriptor_pool.DescriptorPool()
        for file in descriptors.file:
            pool.Add(file)
        request = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"iris_model.v{major}.PredictRequest"))
        response = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"iris_model.v{major}.PredictResponse"))
        return request, response


@pytest.fixture
def reference() -> Any:
    from iris_model.model import IrisInput, IrisModel

    model = IrisModel()
    return lambda row: model.predict(IrisInput(**row)).species.value


def iris_rows() -> list[dict[str, float]]:
    from sklearn import datasets

    names = ("sepal_length", "sepal_width", "petal_length", "petal_width")
    rows = [dict(zip(names, map(float, row), strict=True)) for row in datasets.load_iris().data]
    return rows[::5]  # 30 rows, ten of each species


def check_server(served: Served, clients: Clients, protos: Path, reference: Any, version: str,
                 majors: tuple[int, ...]) -> None:
    pb = clients.pb
    with grpc.insecure_channel(served.address) as channel:
        classic = clients.grpc.ModelgRPCServiceStub(channel)
        for row in iris_rows():
            answer = classic.iris_model_predict(pb.iris_model_input(**row), timeout=30)
            assert answer.species == reference(row), row
        zeros = classic.iris_model_predict(pb.iris_model_input(), timeout=30)  # 0.0 is not even sent
        assert zeros.species == reference(dict.fromkeys(("sepal_length", "sepal_width", "petal_length",
                                                          "petal_width"), 0.0))
        listed = classic.get_models(pb.empty(), timeout=30)
        assert sorted((m.qualified_name, m.major_version) for m in listed.models) == [
            ("iris_model", major) for major in sorted(majors)]
        v1 = next(m for m in listed.models if m.major_version == 1)
        assert (v1.input_type, v1.output_type, v1.predict_operation) == (
            "iris_model_input", "iris_model_output", "iris_model_predict")
        for major in majors:
            request, response = clients.new_classes(protos, major)
            call = channel.unary_unary(f"/iris_model.v{major}.IrisModelService/Predict",
                                       request_serializer=request.SerializeToString,
                                       response_deserializer=response.FromString)
            row = iris_rows()[0]
            answer = call(request(**row), timeout=30)
            expected = reference(row)
            assert answer.species == (expected if major == 1 else answer.DESCRIPTOR.fields_by_name[
                "species"].enum_type.values_by_name[f"SPECIES_{expected.upper()}"].number)
            if major == 1 and version != "1.0.0":
                assert answer.release == "1.1.0"
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        services = {s.name for reply in replies for s in reply.list_services_response.service}
        assert "model_grpc_service.ModelgRPCService" in services
        assert {f"iris_model.v{major}.IrisModelService" for major in majors} <= services


def test_the_adoption_guide_step_by_step(tmp_path: Path, reference: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    root = tmp_path / "project"
    root.mkdir()
    steps = guide_steps(GUIDE.read_text(encoding="utf-8"))
    assert [s.action for s in steps].count("run") == 4, "the guide's steps changed: update this test"
    clients = Clients(tmp_path)
    protos = root / "proto_versions"
    stages = iter([("1.0.0", (1,)), ("1.1.0", (1,)), ("2.0.0", (1, 2))])
    outputs: list[str] = []
    for step in steps:
        target = root / step.target
        if step.action == "file":
            if step.target.endswith(".proto"):
                assert step.body == CLASSIC.read_text(encoding="utf-8"), "the guide shows the classic proto as tested"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(step.body, encoding="utf-8")
        elif step.action == "edit":
            target.write_text(apply_diff(target.read_text(encoding="utf-8"), step.body), encoding="utf-8")
        elif step.action == "append":
            target.write_text(target.read_text(encoding="utf-8") + step.body, encoding="utf-8")
        else:
            for line in step.body.splitlines():
                assert line.startswith("$ protoreg "), line
                args = line.removeprefix("$ protoreg ").split()
                if args[0] == "serve":
                    version, majors = next(stages)
                    served = Served(root, args)
                    try:
                        outputs.append("\n".join(served.lines))
                        check_server(served, clients, protos, reference, version, majors)
                    finally:
                        served.stop()
                    continue
                done = subprocess.run([PROTOREG, *args], cwd=root, env=_env(), capture_output=True, text=True,
                                      check=False)
                assert done.returncode == 0, done.stdout + done.stderr
                outputs.append(done.stdout)
    assert next(stages, None) is None
    text = "\n".join(outputs)
    assert "would adopt (iris_model.v1)" in text
    assert f"serving {LEGACY_PREDICT} (legacy) with iris_model.v1.IrisModelService/Predict" in text
    rendered = (protos / "iris_model" / "v1" / "iris_model.proto").read_text(encoding="utf-8")
    assert "  float sepal_length = 1;\n" in rendered and "  string species = 1;\n" in rendered
    assert "  optional string release = 2;\n" in rendered
    assert (protos / "model_grpc_service.proto").read_text(encoding="utf-8") == CLASSIC.read_text(encoding="utf-8")
    v2 = (protos / "iris_model" / "v2" / "iris_model.proto").read_text(encoding="utf-8")
    assert "  optional float sepal_length = 1;\n" in v2 and "Legacy RPC" not in v2
    assert "  optional Species species = 3;\n  reserved 1 to 2;\n" in v2  # a new type never keeps a number
    history = subprocess.run([PROTOREG, "history", "iris_model"], cwd=root, env=_env(), capture_output=True,
                             text=True, check=True).stdout
    assert "adopted from model_grpc_service.proto" in history.splitlines()[1]
