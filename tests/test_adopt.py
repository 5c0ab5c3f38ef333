"""``protoreg adopt``: numbers, presence and reservations from an existing API, mismatches listed
with the line to write, the adoption kept by every later release, and the legacy paths served."""

from __future__ import annotations

import json
import re
import shutil
import urllib.request
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory

from protoreg.registry.database import open_registry
from protoreg.registry.protoc import compile_descriptor_set
from protoreg.registry.textstore import open_location
from tests.project_support import Project
from tests.test_adopt_guide import Served

SHOP = Path(__file__).parent / "fixtures" / "adopt" / "shop" / "shop.proto"
ADOPT = ["adopt", "shop.models:ShopModel", "--proto", "legacy/shop.proto", "--request", "Order",
         "--response", "shop.v0.Verdict", "--rpc", "/shop.v0.Shop/Judge"]

MODEL = '''from enum import Enum

from pydantic import BaseModel, Field
{extra}

class Status(str, Enum):
    open = "open"
    closed = "closed"


class Line(BaseModel):
    sku: str
    count: {count}


class ShopInput(BaseModel):
    id: {id}
    lines: list[Line] = []
    status: {status} = Status.open
    rush: bool = False
{more_inputs}

class ShopOutput(BaseModel):
    score: float
    ok: bool


class ShopModel:
    qualified_name = "shop_model"
    display_name = "Shop"
    description = "Judges an order."
    version = "{version}"
    input_schema = ShopInput
    output_schema = ShopOutput

    def predict(self, data):
        return ShopOutput(score=float(len(data.id) + len(data.lines)), ok=data.status == Status.open)
'''
FITS = {"count": 'int = Field(json_schema_extra={"protoreg": {"type": "int32"}})', "id": "str",
        "status": "Status", "extra": "", "more_inputs": "", "version": "1.0.0"}


def write_model(project: Project, **changes: str) -> None:
    (project.root / "shop").mkdir(exist_ok=True)
    project.write("shop/__init__.py", "")
    project.write("shop/models.py", MODEL.format(**{**FITS, **changes}))
    (project.root / "legacy").mkdir(exist_ok=True)
    shutil.copy(SHOP, project.root / "legacy" / "shop.proto")


def rendered(project: Project, major: int = 1) -> str:
    return (project.root / "proto_versions" / "shop_model" / f"v{major}" / "shop_model.proto").read_text()


def block(text: str, name: str, kind: str = "message") -> str:
    start = text.index(f"{kind} {name} {{")
    return text[start:text.index("\n}\n", start) + 3]


def test_adopt_keeps_numbers_presence_and_reservations_and_numbers_new_fields_above(project: Project) -> None:
    write_model(project)
    result = project.cli(*ADOPT)
    assert result.exit_code == 0, result.output
    assert "shop_model 1.0.0: adopted (shop_model.v1)" in result.output
    assert "reserved PredictRequest.note = 4 (in the existing API, not in the model)" in result.output
    assert "reserved Status.STATUS_LOST = 3 (in the existing API, not in the model)" in result.output
    assert "added PredictRequest.rush = 13" in result.output  # above the reserved 10 to 12
    text = rendered(project)
    request = block(text, "PredictRequest")
    assert "  string id = 1;\n" in request and "  repeated Line lines = 2;\n" in request
    assert "  Status status = 3;\n" in request  # implicit presence kept: no optional
    assert "  optional bool rush = 13;\n" in request
    assert '  reserved 4, 10 to 12;\n  reserved "legacy_field", "note";\n' in request
    line = block(text, "Line")
    implicit = "  // Implicit presence: a zero value is not sent, and absent reads as zero.\n"
    assert f"{implicit}  string sku = 1;\n{implicit}  int32 count = 2;\n  reserved 3;\n" in line
    assert "Required." not in line  # absent is never refused there: the model gets the zero value
    status = block(text, "Status", "enum")
    assert "STATUS_OPEN = 1;" in status and "STATUS_CLOSED = 2;" in status
    assert '  reserved 3;\n  reserved "STATUS_LOST";\n' in status
    assert f"{implicit}  double score = 1;\n{implicit}  bool ok = 2;\n" in block(text, "PredictResponse")
    assert "// Adopted from: shop.proto (shop.v0.Order -> PredictRequest, shop.v0.Verdict -> PredictResponse)\n" in text
    assert "// Legacy RPC: /shop.v0.Shop/Judge\n" in text
    assert (project.root / "proto_versions" / "shop.proto").read_text() == SHOP.read_text()
    history = project.cli("history", "shop_model")
    assert history.output.splitlines()[1] == (
        "  adopted from shop.proto: shop.v0.Order -> PredictRequest, shop.v0.Verdict -> PredictResponse; "
        "legacy RPC /shop.v0.Shop/Judge")
    verify = project.cli("verify")
    assert verify.exit_code == 0, verify.output
    assert project.cli("render", "--check").exit_code == 0


CLASSIC = Path(__file__).parent / "fixtures" / "adopt" / "classic" / "model_grpc_service.proto"
CLASSIC_MODEL = '''from pydantic import BaseModel, Field

FLOAT = {"protoreg": {"type": "float"}}


class IrisInput(BaseModel):
    sepal_length: float = Field(json_schema_extra=FLOAT)
    sepal_width: float = Field(json_schema_extra=FLOAT)
    petal_length: float = Field(json_schema_extra=FLOAT)
    petal_width: float = Field(json_schema_extra=FLOAT)


class IrisOutput(BaseModel):
    species: str


class Iris:
    qualified_name = "iris_model"
    display_name = "Iris"
    description = "Iris."
    version = "1.0.0"
    input_schema = IrisInput
    output_schema = IrisOutput

    def predict(self, data):
        return IrisOutput(species="setosa")
'''


def _messages_only(text: str) -> str:
    """The messages of a file (services differ by design: the legacy path is served beside)."""
    return re.sub(r"\n(//[^\n]*\n)*service \w+ \{.*?\n\}\n", "\n", text, flags=re.DOTALL)


def _as_classic(text: str) -> str:
    """A rendering of iris_model.v1 with the classic package and message names (the wire and JSON
    ignore message names; this lets the checker pair the messages)."""
    text = _messages_only(text).replace("package iris_model.v1;", "package model_grpc_service;")
    return text.replace("PredictRequest", "iris_model_input").replace("PredictResponse", "iris_model_output")


@pytest.mark.parametrize("adopted", [True, False])
def test_the_adopted_rendering_is_wire_json_and_source_compatible_with_the_classic_api(project: Project,
                                                                                 adopted: bool) -> None:
    project.write("legacy/model_grpc_service.proto", CLASSIC.read_text())
    project.write("classic_iris.py", CLASSIC_MODEL)
    if adopted:
        result = project.cli("adopt", "classic_iris:Iris", "--proto", "legacy/model_grpc_service.proto",
                             "--request", "iris_model_input", "--response", "iris_model_output")
    else:  # what a new user tried first: a fresh registration of the same model
        result = project.cli("register", "classic_iris:Iris")
    assert result.exit_code == 0, result.output
    before, after = project.root / "before", project.root / "after"
    before.mkdir()
    after.mkdir()
    classic = CLASSIC.read_text()
    kept = [re.search(rf"message {name} \{{.*?\n\}}\n", classic, re.DOTALL) for name in ("iris_model_input",
                                                                                          "iris_model_output")]
    (before / "model_grpc_service.proto").write_text(
        'syntax = "proto3";\n\npackage model_grpc_service;\n\n' + "\n".join(m[0] for m in kept if m))
    rendering = project.root / "proto_versions" / "iris_model" / "v1" / "iris_model.proto"
    (after / "model_grpc_service.proto").write_text(_as_classic(rendering.read_text()))
    checked = project.cli("breaking", str(after), "--against", str(before), "--category", "SOURCE")
    if adopted:  # only additions (the stream messages protoreg renders beside)
        assert checked.exit_code == 0 and "error" not in checked.output, checked.output
    else:
        assert checked.exit_code == 100 and "FIELD_PRESENCE_CHANGED" in checked.output, checked.output


def test_a_model_that_does_not_fit_lists_every_mismatch_and_records_nothing(project: Project) -> None:
    write_model(project, count="int", status="str", id="str | None")
    result = project.cli(*ADOPT)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert ('Line.count = Line.count: the model renders "int64" but the existing API has "int32"; write: count: '
            'int = Field(json_schema_extra={"protoreg": {"type": "int32"}})') in lines
    assert ('PredictRequest.status = Order.status: the model has the scalar "string" but the existing API the enum '
            '"shop.v0.Order.Status"; write: status: <an Enum whose values are those of shop.v0.Order.Status>') in lines
    assert any(line.startswith("PredictRequest.id = Order.id: the legacy field has implicit presence") and
               line.endswith("write: id: str") for line in lines), lines
    assert lines[-1].startswith("Error: the model does not fit the existing API (3 mismatches); nothing was recorded")
    assert not (project.root / "proto_versions").exists()
    assert not (project.root / "protoreg.db").exists()  # the plan failed before the registry was opened


def test_a_float_and_an_enum_against_the_classic_api_say_what_to_write(project: Project) -> None:
    project.write("classic.proto", (Path(__file__).parent / "fixtures" / "adopt" / "classic" /
                                    "model_grpc_service.proto").read_text())
    project.write("iris_classic.py", "from iris_model.model import IrisModel\n")
    result = project.cli("adopt", "iris_classic:IrisModel", "--proto", "classic.proto", "--request", "iris_model_input",
                         "--response", "iris_model_output")
    assert result.exit_code == 1
    assert ('PredictRequest.sepal_length = iris_model_input.sepal_length: the model renders "double" but the '
            'existing API has "float"; write: sepal_length: float = Field(json_schema_extra={"protoreg": '
            '{"type": "float"}})') in result.output
    assert ('PredictResponse.species = iris_model_output.species: the model has the enum "Species" but the existing '
            'API the scalar "string"; write: species: str') in result.output


def test_dry_run_shows_the_plan_and_records_nothing(project: Project) -> None:
    write_model(project)
    result = project.cli(*ADOPT, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "shop_model 1.0.0: would adopt (shop_model.v1)" in result.output
    assert "kept PredictRequest.status = 3 from shop.v0.Order (implicit presence)" in result.output
    assert "paired shop.v0.Order.Line -> Line" in result.output
    assert not (project.root / "proto_versions").exists()
    with open_registry("sqlite:///protoreg.db") as registry:  # created, as register --dry-run creates it
        assert registry.model_names() == []


def test_later_releases_keep_the_adoption(project: Project) -> None:
    write_model(project)
    assert project.cli(*ADOPT).exit_code == 0
    write_model(project, version="1.1.0", more_inputs="    channel: str = \"\"\n")
    result = project.cli("register", "shop.models:ShopModel")
    assert result.exit_code == 0, result.output
    assert "added PredictRequest.channel = 14" in result.output
    request = block(rendered(project), "PredictRequest")
    assert "  string id = 1;\n" in request and "  Status status = 3;\n" in request  # still implicit
    assert "  optional string channel = 14;\n" in request
    assert '  reserved 4, 10 to 12;\n  reserved "legacy_field", "note";\n' in request
    assert "// Legacy RPC: /shop.v0.Shop/Judge\n" in rendered(project)
    check = project.cli("check", "shop.models:ShopModel")
    assert check.exit_code == 0 and "FIELD_PRESENCE_CHANGED" not in check.output, check.output
    # a name the existing API used means something else to its clients
    write_model(project, version="1.2.0", more_inputs="    channel: str = \"\"\n    note: int = 0\n")
    refused = project.cli("register", "shop.models:ShopModel")
    assert refused.exit_code == 1
    assert 'field "note" of "PredictRequest" has a name the adopted API reserves (shop.proto)' in refused.output
    # a new major line: protoreg's explicit presence, no legacy path, the reservations stay
    write_model(project, version="2.0.0", id="str = \"\"")
    assert project.cli("register", "shop.models:ShopModel").exit_code == 0
    v2 = rendered(project, 2)
    assert "  optional string id = 1;\n" in v2 and "Legacy RPC" not in v2
    assert '"legacy_field"' in block(v2, "PredictRequest")


def test_adopt_records_the_first_release_only(project: Project) -> None:
    write_model(project)
    assert project.cli(*ADOPT).exit_code == 0
    again = project.cli(*ADOPT)
    assert again.exit_code == 0 and "already adopted with this schema; nothing to do" in again.output
    write_model(project, version="1.1.0")
    assert project.cli("register", "shop.models:ShopModel").exit_code == 0
    refused = project.cli(*ADOPT)
    assert refused.exit_code == 1
    assert "shop_model already has releases (1.0.0, 1.1.0); `protoreg adopt` records a model's first release" in (
        refused.output)


def test_usage_errors_name_the_value_and_the_fix(project: Project) -> None:
    write_model(project)
    unknown = project.cli(*[a if a != "Order" else "Orders" for a in ADOPT])
    assert unknown.exit_code == 2
    assert '--request "Orders" is not a message of the given .proto files (messages: shop.v0.Order' in unknown.output
    wrong_rpc = project.cli(*[a if a != "/shop.v0.Shop/Judge" else "/shop.v0.Shop/Nope" for a in ADOPT])
    assert wrong_rpc.exit_code == 2
    assert '--rpc "/shop.v0.Shop/Nope" is not a method of the given .proto files' in wrong_rpc.output
    missing = project.cli(*[a if a != "legacy/shop.proto" else "legacy/none.proto" for a in ADOPT])
    assert missing.exit_code == 2 and '--proto "legacy/none.proto" is not a file' in missing.output


def test_the_text_form_carries_the_adoption(project: Project) -> None:
    write_model(project)
    assert project.cli("--db", "proto_registry", *ADOPT).exit_code == 0
    text = (project.root / "proto_registry" / "shop_model.txt").read_text()
    assert "\nadoption\n" in text
    with open_location("proto_registry") as text_registry:  # read straight from the file, first thing
        assert text_registry.adoption("shop_model") is not None
    assert project.cli("--db", "sqlite:///copy.db", "import", "proto_registry").exit_code == 0
    with open_registry("sqlite:///copy.db") as registry:
        adoption = registry.adoption("shop_model")
        assert adoption is not None and adoption.rpc == "/shop.v0.Shop/Judge"
        assert ("PredictRequest", 1) in adoption.implicit
    exported = project.cli("--db", "sqlite:///copy.db", "export", "--to", "-")
    assert exported.output == text
    write_model(project, version="1.1.0", more_inputs="    channel: str = \"\"\n")
    checked = project.cli("--db", "proto_registry", "check", "shop.models:ShopModel")  # the text form, read only
    assert checked.exit_code == 0 and "FIELD_PRESENCE_CHANGED" not in checked.output, checked.output
    assert project.cli("--db", "sqlite:///copy.db", "register", "shop.models:ShopModel").exit_code == 0
    assert "  Status status = 3;\n" in block(rendered(project), "PredictRequest")


def _legacy_classes() -> tuple[type, type]:
    descriptors = compile_descriptor_set(SHOP.parent, [SHOP.name])
    pool = descriptor_pool.DescriptorPool()
    for file in descriptors.file:
        pool.Add(file)
    return (message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.v0.Order")),
            message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.v0.Verdict")))


def test_serve_answers_the_legacy_path_and_lists_what_is_not_bound(project: Project) -> None:
    write_model(project)
    assert project.cli(*ADOPT).exit_code == 0
    served = Served(project.root, ["serve", "shop.models:ShopModel", "--http-address", "127.0.0.1:0"])
    try:
        assert "serving /shop.v0.Shop/Judge (legacy) with shop_model.v1.ShopModelService/Predict" in served.lines
        assert ("not bound: /shop.v0.Shop/Ping answers UNIMPLEMENTED (bind it with --bind "
                "/shop.v0.Shop/Ping=module:function)") in served.lines
        order, verdict = _legacy_classes()
        with grpc.insecure_channel(served.address) as channel:
            judge = channel.unary_unary("/shop.v0.Shop/Judge", request_serializer=order.SerializeToString,
                                        response_deserializer=verdict.FromString)
            # id "" and status zero are not even sent: the model gets "" and its default
            empty = judge(order(), timeout=30)
            assert (empty.score, empty.ok) == (0.0, True)
            answer = judge(order(id="abc", lines=[{"sku": "x", "count": 2}], status=2, note="ignored"), timeout=30)
            assert (answer.score, answer.ok) == (4.0, False)
            with pytest.raises(grpc.RpcError) as error:
                channel.unary_unary("/shop.v0.Shop/Ping")(b"", timeout=30)
            assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
            assert "--bind /shop.v0.Shop/Ping=module:function" in (error.value.details() or "")
        (http,) = [line.split()[2] for line in served.lines if line.startswith("http on ")]
        request = urllib.request.Request(f"{http.rstrip('/')}/shop.v0.Shop/Judge", data=b'{"id": "abcd"}',
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:  # the JSON side answers the legacy path too
            assert json.loads(answer.read()) == {"score": 4.0, "ok": True}
    finally:
        served.stop()


def test_bind_answers_another_method_with_the_served_models_metadata(project: Project) -> None:
    write_model(project)
    project.write("binds.py", '''
def ping(models, request):
    (model,) = models
    return {"score": model.major + model.minor / 10, "ok": model.legacy_rpc == "/shop.v0.Shop/Judge"
            and model.request_type == "shop.v0.Order" and request.id == "who"}
''')
    assert project.cli(*ADOPT).exit_code == 0
    served = Served(project.root, ["serve", "shop.models:ShopModel", "--bind", "/shop.v0.Shop/Ping=binds:ping"])
    try:
        assert "serving /shop.v0.Shop/Ping (legacy) with --bind binds:ping" in served.lines
        order, verdict = _legacy_classes()
        with grpc.insecure_channel(served.address) as channel:
            ping = channel.unary_unary("/shop.v0.Shop/Ping", request_serializer=order.SerializeToString,
                                       response_deserializer=verdict.FromString)
            answer = ping(order(id="who"), timeout=30)
            assert (answer.score, answer.ok) == (1.0, True)
    finally:
        served.stop()


@pytest.mark.parametrize(("bind", "message"), [
    ("/shop.v0.Shop/Nope=binds:ping", "--bind /shop.v0.Shop/Nope: not a method of a legacy service"),
    ("/shop.v0.Shop/Ping=binds:nothing", '--bind /shop.v0.Shop/Ping=binds:nothing: cannot load "binds:nothing"'),
    ("shop.v0.Shop/Ping", '--bind wants /package.Service/Method=module:function, not "shop.v0.Shop/Ping"'),
])
def test_a_bind_that_cannot_be_served_stops_serve_in_one_sentence(project: Project, bind: str, message: str) -> None:
    write_model(project)
    project.write("binds.py", "def ping(models, request):\n    return {}\n")
    assert project.cli(*ADOPT).exit_code == 0
    result = project.run("serve", "shop.models:ShopModel", "--address", "127.0.0.1:0", "--bind", bind)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_serve_refuses_a_legacy_path_no_file_declares(project: Project) -> None:
    write_model(project)
    assert project.cli(*ADOPT).exit_code == 0
    legacy = project.root / "proto_versions" / "shop.proto"
    legacy.write_text(legacy.read_text().replace("  rpc Judge(Order) returns (Verdict);\n", ""))
    result = project.run("serve", "shop.models:ShopModel", "--address", "127.0.0.1:0")
    assert result.returncode == 1
    assert ("names the legacy RPC /shop.v0.Shop/Judge, which no file of proto_versions declares; re-render it with "
            "`protoreg render`") in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
