"""The compatibility commands through the real CLI: ``check``, ``register`` (gated), ``diff``,
``breaking``; exit codes 0 / 100 / 1 / 2 and the text, JSON and GitHub formats."""

from __future__ import annotations

import inspect
import json
import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from protoreg.cli import main
from protoreg.registry.database import open_registry
from tests.conftest import make_model


class In1(BaseModel):
    age: int
    name: str


class Out1(BaseModel):
    score: float
    label: str


class In2(BaseModel):
    age: str  # int64 -> string
    name: str


class Out2(BaseModel):
    score: float  # "label" removed from the response


class In3(BaseModel):
    age: int
    name: str
    note: str | None = None


@pytest.fixture
def models(monkeypatch: pytest.MonkeyPatch) -> str:
    """A module ``compat_cli_models`` holding model classes, importable by MODEL_REF."""
    module = types.ModuleType("compat_cli_models")
    module.V1 = make_model("shop_model", "1.0.0", In1, Out1)  # type: ignore[attr-defined]
    module.V1_1 = make_model("shop_model", "1.1.0", In2, Out2)  # type: ignore[attr-defined]
    module.V2 = make_model("shop_model", "2.0.0", In2, Out2)  # type: ignore[attr-defined]
    module.V1_2 = make_model("shop_model", "1.2.0", In3, Out1)  # type: ignore[attr-defined]
    module.OTHER = make_model("other_model", "1.0.0", In1, Out1)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "compat_cli_models", module)
    return "compat_cli_models"


def cli(tmp_path: Path, *args: str) -> Any:
    base = ["--db", f"sqlite:///{tmp_path / 'r.db'}", "--protos", str(tmp_path / "protos")]
    return CliRunner().invoke(main, [*base, *args])


def test_check_passes_fails_and_explains_in_three_formats(tmp_path: Path, models: str) -> None:
    with open_registry(f"sqlite:///{tmp_path / 'r.db'}"):  # a registry with no release yet
        pass
    first = cli(tmp_path, "check", f"{models}:V1")
    assert first.exit_code == 0, first.output
    assert "first release" in first.output
    assert cli(tmp_path, "register", f"{models}:V1").exit_code == 0

    text = cli(tmp_path, "check", f"{models}:V1_1")
    assert text.exit_code == 100, text.output
    lines = text.output.strip().splitlines()
    assert lines[-1] == "shop_model 1.1.0 needs a new major version: 2 major findings"
    assert any(
        'Field "age" (1, now 3) on "PredictRequest" changed type from "int64" to "string".' in ln
        for ln in lines
    )

    data = json.loads(cli(tmp_path, "check", f"{models}:V1_1", "--format", "json").output)
    assert set(data) == {
        "model",
        "declared_version",
        "baseline_version",
        "declared_bump",
        "required_bump",
        "passed",
        "findings",
        "exceptions",
    }
    assert (data["declared_bump"], data["required_bump"], data["passed"]) == ("minor", "major", False)
    assert {f["rule"] for f in data["findings"]} == {
        "FIELD_TYPE_CHANGED_INCOMPATIBLE", "FIELD_REMOVED", "FIELD_REMOVED_WITHOUT_DEPRECATION"}
    for f in data["findings"]:
        assert set(f) == {
            "rule",
            "category",
            "direction",
            "path",
            "message",
            "before",
            "after",
            "required_bump",
            "level",
            "file",
            "line",
            "waived",
        }
        assert f["level"] == ("warning" if f["rule"] == "FIELD_REMOVED_WITHOUT_DEPRECATION" else "error")
    removed = next(f for f in data["findings"] if f["rule"] == "FIELD_REMOVED")
    assert (removed["direction"], removed["path"], removed["before"]) == (
        "response",
        "PredictResponse.label",
        "string",
    )

    github = cli(tmp_path, "check", f"{models}:V1_1", "--format", "github")
    assert github.exit_code == 100
    annotation = re.compile(r"^::(error|warning|notice) (file=[^,:]+,(line=\d+,)?)?title=[A-Za-z_]+::\S.*$")
    for line in github.output.strip().splitlines():
        assert annotation.match(line), line
    # Each annotation points at the line of the model's source that declares the field (In2.age),
    # or at the class when the field is gone (Out2, which dropped "label").
    here = Path(__file__).resolve().relative_to(Path.cwd())
    age_line = inspect.getsourcelines(In2)[1] + 1
    assert f"::error file={here},line={age_line},title=FIELD_TYPE_CHANGED_INCOMPATIBLE::" in github.output
    out_line = inspect.getsourcelines(Out2)[1]
    assert f"::error file={here},line={out_line},title=FIELD_REMOVED::" in github.output

    assert cli(tmp_path, "check", f"{models}:V2").exit_code == 0
    ok = cli(tmp_path, "check", f"{models}:V1_2", "--format", "json")
    assert ok.exit_code == 0 and json.loads(ok.output)["required_bump"] == "minor"


def test_check_several_models_gives_a_json_list(tmp_path: Path, models: str) -> None:
    cli(tmp_path, "register", f"{models}:V1")
    result = cli(tmp_path, "check", f"{models}:V1_2", f"{models}:OTHER", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [d["model"] for d in data] == ["shop_model", "other_model"]


def test_check_usage_and_failure_exit_codes(tmp_path: Path, models: str) -> None:
    assert cli(tmp_path, "check").exit_code == 2
    assert cli(tmp_path, "check", f"{models}:V1", "--format", "yaml").exit_code == 2
    missing = cli(tmp_path, "check", "compat_cli_models_missing:Nope")
    assert missing.exit_code == 1 and "Cannot import module" in missing.output
    cli(tmp_path, "register", f"{models}:V1")
    unknown = cli(tmp_path, "check", f"{models}:V1_2", "--against", "9.9.9")
    assert unknown.exit_code == 1 and '"9.9.9"' in unknown.output


def test_register_refuses_a_too_small_bump_with_exit_100_and_writes_nothing(
    tmp_path: Path, models: str
) -> None:
    assert cli(tmp_path, "register", f"{models}:V1").exit_code == 0
    refused = cli(tmp_path, "register", f"{models}:V1_1")
    assert refused.exit_code == 100, refused.output
    assert "needs a new major version" in refused.output
    assert "FIELD_REMOVED" in refused.output
    history = cli(tmp_path, "history", "shop_model")
    assert "1.1.0" not in history.output
    dry = cli(tmp_path, "register", f"{models}:V1_1", "--dry-run")
    assert dry.exit_code == 100
    as_json = cli(tmp_path, "register", f"{models}:V1_2", "--dry-run", "--format", "json")
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout)["required_bump"] == "minor"  # human lines went to stderr
    accepted = cli(tmp_path, "register", f"{models}:V1_2")
    assert accepted.exit_code == 0, accepted.output
    assert "FIELD_ADDED_OPTIONAL" in accepted.output
    assert cli(tmp_path, "register", f"{models}:V2").exit_code == 0
    assert (tmp_path / "protos" / "shop_model" / "v2" / "shop_model.proto").exists()


def test_diff_between_two_registered_releases(tmp_path: Path, models: str) -> None:
    for ref in ("V1", "V1_2", "V2"):
        assert cli(tmp_path, "register", f"{models}:{ref}").exit_code == 0
    minor = cli(tmp_path, "diff", "shop_model", "1.0.0", "1.2.0", "--format", "json")
    assert minor.exit_code == 0, minor.output
    assert [f["rule"] for f in json.loads(minor.output)["findings"]] == ["FIELD_ADDED_OPTIONAL"]
    major = cli(tmp_path, "diff", "shop_model", "1.2.0", "2.0.0")
    assert major.exit_code == 0, major.output
    assert "PACKAGE_CHANGED" in major.output and "FIELD_REMOVED" in major.output
    assert cli(tmp_path, "diff", "shop_model", "1.0.0", "7.0.0").exit_code == 1


# -- breaking on .proto trees ----------------------------------------------------------------

HEADER = 'syntax = "proto3";\npackage acme.v1;\nservice S { rpc Get(Req) returns (Resp); }\n'

BREAKING_CASES = [
    # (id, before body, after body, expected rule IDs with --category WIRE_JSON)
    (
        "same",
        "message Req { int32 a = 1; } message Resp { string b = 1; }",
        "message Req { int32 a = 1; } message Resp { string b = 1; }",
        set(),
    ),
    (
        "field added",
        "message Req { int32 a = 1; } message Resp { string b = 1; }",
        "message Req { int32 a = 1; string c = 2; } message Resp { string b = 1; }",
        set(),
    ),
    (
        "removed, reserved",
        "message Req { int32 a = 1; int32 z = 2; } message Resp { string b = 1; }",
        'message Req { int32 a = 1; reserved 2; reserved "z"; } message Resp { string b = 1; }',
        set(),
    ),
    (
        "removed, unreserved",
        "message Req { int32 a = 1; int32 z = 2; } message Resp { string b = 1; }",
        "message Req { int32 a = 1; } message Resp { string b = 1; }",
        {"FIELD_REMOVED_NUMBER_NOT_RESERVED", "FIELD_REMOVED_NAME_NOT_RESERVED"},
    ),
    (
        "renamed",
        "message Req { int32 a = 1; } message Resp { string b = 1; }",
        "message Req { int32 aa = 1; } message Resp { string b = 1; }",
        {"FIELD_RENAMED"},
    ),
    (
        "int32 to int64",
        "message Req { int32 a = 1; } message Resp { string b = 1; }",
        "message Req { int64 a = 1; } message Resp { string b = 1; }",
        {"FIELD_TYPE_CHANGED_JSON_INCOMPATIBLE"},
    ),
    (
        "string to int32",
        "message Req { int32 a = 1; } message Resp { string b = 1; }",
        "message Req { int32 a = 1; } message Resp { int32 b = 1; }",
        {"FIELD_TYPE_CHANGED_INCOMPATIBLE"},
    ),
    (
        "nested message, repeated",
        "message Req { Outer.Inner a = 1; } message Resp { string b = 1; } "
        "message Outer { message Inner { double v = 1; } }",
        "message Req { repeated Outer.Inner a = 1; } message Resp { string b = 1; } "
        "message Outer { message Inner { double v = 1; } }",
        {"FIELD_CARDINALITY_CHANGED"},
    ),
    (
        "oneof",
        "message Req { oneof o { int32 a = 1; string s = 2; } } message Resp { string b = 1; }",
        "message Req { int32 a = 1; oneof o { string s = 2; } } message Resp { string b = 1; }",
        {"FIELD_ONEOF_CHANGED"},
    ),
    (
        "enum value renamed",
        "message Req { E e = 1; } message Resp { string b = 1; } enum E { E_X = 0; E_Y = 1; }",
        "message Req { E e = 1; } message Resp { string b = 1; } enum E { E_X = 0; E_Z = 1; }",
        {"ENUM_VALUE_RENAMED"},
    ),
    (
        "enum value added",
        "message Req { E e = 1; } message Resp { string b = 1; } enum E { E_X = 0; }",
        "message Req { E e = 1; } message Resp { string b = 1; } enum E { E_X = 0; E_Y = 1; }",
        set(),
    ),
    (
        "map value type",
        "message Req { map<string, int32> m = 1; } message Resp { string b = 1; }",
        "message Req { map<string, sint32> m = 1; } message Resp { string b = 1; }",
        {"FIELD_TYPE_CHANGED_INCOMPATIBLE"},
    ),
]


def write_tree(root: Path, body: str, header: str = HEADER) -> Path:
    (root / "acme" / "v1").mkdir(parents=True, exist_ok=True)
    (root / "acme" / "v1" / "api.proto").write_text(header + body + "\n", encoding="utf-8")
    return root


@pytest.mark.parametrize(
    ("case", "before", "after", "expected"), BREAKING_CASES, ids=[c[0] for c in BREAKING_CASES]
)
def test_breaking_on_proto_trees(
    tmp_path: Path, case: str, before: str, after: str, expected: set[str]
) -> None:
    old = write_tree(tmp_path / "old", before)
    new = write_tree(tmp_path / "new", after)
    result = CliRunner().invoke(
        main, ["breaking", str(new), "--against", str(old), "--category", "WIRE_JSON", "--format", "json"]
    )
    assert result.exit_code == (100 if expected else 0), result.output
    data = json.loads(result.output)
    assert {f["rule"] for f in data["findings"]} == expected
    assert data["passed"] is not bool(expected)


def test_breaking_reads_descriptor_sets_and_directions_from_services(tmp_path: Path) -> None:
    from protoreg.registry.protoc import compile_descriptor_set

    old = write_tree(
        tmp_path / "old", "message Req { int32 a = 1; } message Resp { string b = 1; string c = 2; }"
    )
    new = write_tree(
        tmp_path / "new",
        'message Req { int32 a = 1; } message Resp { string b = 1; reserved 2; reserved "c"; }',
    )
    for name, root in (("old.binpb", old), ("new.binpb", new)):
        (tmp_path / name).write_bytes(compile_descriptor_set(root).SerializeToString())
    wire = CliRunner().invoke(
        main,
        [
            "breaking",
            str(tmp_path / "new.binpb"),
            "--against",
            str(tmp_path / "old.binpb"),
            "--category",
            "WIRE",
        ],
    )
    assert wire.exit_code == 0, wire.output
    everything = CliRunner().invoke(main, ["breaking", str(new), "--against", str(old), "--format", "json"])
    assert everything.exit_code == 100
    (finding,) = json.loads(everything.output)["findings"]
    assert (finding["rule"], finding["direction"]) == ("FIELD_REMOVED", "response")


def test_breaking_with_history_catches_what_a_pairwise_check_cannot(tmp_path: Path) -> None:
    v1 = write_tree(
        tmp_path / "v1", "message Req { int32 a = 1; int64 gone = 2; } message Resp { string b = 1; }"
    )
    v2 = write_tree(tmp_path / "v2", "message Req { int32 a = 1; } message Resp { string b = 1; }")
    v3 = write_tree(
        tmp_path / "v3", "message Req { int32 a = 1; string other = 2; } message Resp { string b = 1; }"
    )
    pairwise = CliRunner().invoke(main, ["breaking", str(v3), "--against", str(v2), "--category", "WIRE"])
    assert pairwise.exit_code == 0, pairwise.output
    history = CliRunner().invoke(
        main, ["breaking", str(v3), "--against", str(v1), "--against", str(v2), "--category", "WIRE"]
    )
    assert history.exit_code == 100, history.output
    assert "FIELD_NUMBER_REUSED" in history.output
    assert 'reuses number 2, which "gone" (2, "int64") had in' in history.output


def test_breaking_reports_bad_input_without_a_traceback(tmp_path: Path) -> None:
    good = write_tree(tmp_path / "good", "message Req {} message Resp {}")
    bad = write_tree(tmp_path / "bad", "message Req { nonsense }")
    result = CliRunner().invoke(main, ["breaking", str(bad), "--against", str(good)])
    assert result.exit_code == 1 and "protoc could not compile" in result.output
    junk = tmp_path / "junk.binpb"
    junk.write_bytes(b"\xff\xff\xff")
    result = CliRunner().invoke(main, ["breaking", str(junk), "--against", str(good)])
    assert result.exit_code == 1 and "FileDescriptorSet" in result.output
    assert CliRunner().invoke(main, ["breaking", str(good)]).exit_code == 2
