"""The protovalidate rendering: ``buf.validate`` rules that refuse exactly what the server refuses.

A model with constrained fields of every kind is registered in a real SQLite registry and
rendered with ``protovalidate`` on; the tree (with the shipped ``buf/validate/validate.proto``)
is compiled by the real ``protoc``, and a real server serves it. For values drawn by hypothesis
around every bound, the ``protovalidate`` Python package (a client validating before it sends)
and the server (pydantic) must agree: both accept or both refuse.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any, Literal

import grpc
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from protoreg.registry.database import open_registry
from protoreg.registry.protoc import VALIDATE_PROTO, vendored_include
from protoreg.registry.registration import register_release
from protoreg.registry.render import render_tree, write_tree
from protoreg.registry.schema import extract_schema
from protoreg.service.compile import ProtoTree, load_protos
from tests.buf_testdata import buf_binary
from tests.service_support import running

protovalidate = pytest.importorskip("protovalidate", reason="the protovalidate package is a dev dependency")

WAIT = 30.0
PATH = "/checked_model.v1.CheckedModelService/Predict"


class Size(enum.StrEnum):
    small = "small"
    large = "large"


class CheckedInput(BaseModel):
    """One field per kind of constraint."""

    count: int = Field(ge=0, lt=100, multiple_of=5)
    ratio: float = Field(gt=0.0, le=1.0)
    code: str = Field(min_length=2, max_length=6, pattern=r"^[a-z]+[0-9]*$")
    blob: bytes = Field(b"", max_length=4)
    scores: list[int] = Field(min_length=1, max_length=3)
    note: str | None = Field(None, max_length=5)
    size: Size
    mode: Literal["fast", "slow"] = "fast"
    small: int = Field(0, gt=-3, le=3, json_schema_extra={"protoreg": {"type": "sint32"}})
    sizes: dict[str, Size] = Field(default_factory=dict, max_length=2)


class CheckedOutput(BaseModel):
    ok: bool


class CheckedModel:
    qualified_name = "checked_model"
    display_name = "Checked"
    description = "Accepts what its constraints allow."
    version = "1.0.0"
    input_schema = CheckedInput
    output_schema = CheckedOutput

    def predict(self, data: CheckedInput) -> CheckedOutput:
        return CheckedOutput(ok=True)


@pytest.fixture(scope="module")
def protos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("protovalidate")
    with open_registry(f"sqlite:///{tmp / 'r.db'}") as registry:
        register_release(registry, extract_schema(CheckedModel))
        write_tree(tmp / "protos", render_tree(registry.served_packages(), protovalidate=True))
    return tmp / "protos"


@pytest.fixture(scope="module")
def tree(protos: Path) -> ProtoTree:
    return load_protos(protos)


def test_the_rendering_carries_the_rules_and_ships_validate_proto(protos: Path) -> None:
    text = (protos / "checked_model" / "v1" / "checked_model.proto").read_text(encoding="utf-8")
    assert 'import "buf/validate/validate.proto";' in text
    assert "(buf.validate.field).int64 = {gte: 0, lt: 100}" in text
    assert '(buf.validate.field).cel = {id: "multiple_of", message: "must be a multiple of 5", ' \
           'expression: "this % 5 == 0"}' in text
    assert '(buf.validate.field).string = {min_len: 2, max_len: 6, pattern: "^[a-z]+[0-9]*$"}' in text
    assert "(buf.validate.field).repeated = {min_items: 1, max_items: 3}" in text
    assert "(buf.validate.field).sint32 = {gt: -3, lte: 3}" in text
    assert "(buf.validate.field).enum = {defined_only: true, not_in: [0]}" in text
    assert "(buf.validate.field).map = {max_pairs: 2, values: {enum: {defined_only: true, not_in: [0]}}}" in text
    shipped = (protos / VALIDATE_PROTO).read_text(encoding="utf-8")
    assert shipped == (vendored_include() / VALIDATE_PROTO).read_text(encoding="utf-8")
    assert shipped.startswith("// Copyright 2023-2026 Buf Technologies, Inc.")  # the license header, intact


@pytest.mark.slow
def test_buf_lint_is_clean_with_protovalidate(protos: Path) -> None:
    import subprocess

    buf = buf_binary()
    if buf is None:
        pytest.skip("npm is not installed, so buf (@bufbuild/buf on the npm registry) cannot be installed")
    result = subprocess.run([str(buf), "lint"], cwd=protos, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _server_accepts(channel: grpc.Channel, payload: bytes) -> bool:
    try:
        channel.unary_unary(PATH)(payload, timeout=WAIT)
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
        return False
    return True


def _near(*points: int) -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from([p + d for p in points for d in (-1, 0, 1)]), st.integers(-200, 200))


# Values anywhere, around every bound: most of them break a rule.
ANY = {
    "count": st.one_of(st.none(), _near(0, 5, 95, 100), st.integers(0, 99)),
    "ratio": st.one_of(st.none(), st.sampled_from([0.0, -0.0, 1.0, 1.0000001, 0.5, 5e-324]),
                       st.floats(allow_nan=True, allow_infinity=True)),
    "code": st.one_of(st.none(), st.from_regex(r"^[a-z]{1,7}[0-9]{0,2}$", fullmatch=True), st.text(max_size=8)),
    "blob": st.one_of(st.none(), st.binary(max_size=6)),
    "scores": st.lists(st.integers(-5, 5), max_size=4),
    "note": st.one_of(st.none(), st.text(max_size=7)),
    "size": st.one_of(st.none(), st.integers(0, 3)),
    "mode": st.one_of(st.none(), st.integers(0, 3)),
    "small": st.one_of(st.none(), _near(-3, 3)),
    "sizes": st.dictionaries(st.sampled_from("abc"), st.integers(0, 3), max_size=3),
}
# Values that keep every rule, so that an input with one or two values from ANY is often valid.
VALID = {
    "count": st.integers(0, 19).map(lambda n: n * 5),
    "ratio": st.floats(min_value=0.0, max_value=1.0, exclude_min=True),
    "code": st.from_regex(r"^[a-z]{2,4}[0-9]{0,2}$", fullmatch=True),
    "blob": st.one_of(st.none(), st.binary(max_size=4)),
    "scores": st.lists(st.integers(-5, 5), min_size=1, max_size=3),
    "note": st.one_of(st.none(), st.text(max_size=5)),
    "size": st.integers(1, 2),
    "mode": st.one_of(st.none(), st.integers(1, 2)),
    "small": st.one_of(st.none(), st.integers(-2, 3)),
    "sizes": st.dictionaries(st.sampled_from("abc"), st.integers(1, 2), max_size=2),
}


@st.composite
def inputs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid input with up to two of its values drawn from anywhere."""
    values = {name: draw(strategy) for name, strategy in VALID.items()}
    for name in draw(st.lists(st.sampled_from(sorted(ANY)), max_size=2, unique=True)):
        values[name] = draw(ANY[name])
    return values


def _message(tree: ProtoTree, values: dict[str, Any]) -> Any:
    message = tree.message_class("checked_model.v1.PredictRequest")()
    for name, value in values.items():
        if value is None:
            continue
        if name == "scores":
            message.scores.extend(value)
        elif name == "sizes":
            message.sizes.update(value)
        else:
            setattr(message, name, value)
    return message


BASE: dict[str, Any] = {"count": 5, "ratio": 0.5, "code": "ab1", "scores": [1], "size": 1}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(values=inputs())
# one value past each rule, always tried (the rest is drawn)
@example(values={**BASE, "count": 6})
@example(values={**BASE, "count": 100})
@example(values={**BASE, "ratio": 0.0})
@example(values={**BASE, "ratio": float("nan")})
@example(values={**BASE, "code": "a"})
@example(values={**BASE, "code": "ab-"})
@example(values={**BASE, "code": "ab1\n"})
@example(values={**BASE, "blob": b"12345"})
@example(values={**BASE, "scores": []})
@example(values={**BASE, "scores": [1, 2, 3, 4]})
@example(values={**BASE, "note": "123456"})
@example(values={**BASE, "size": 0})
@example(values={**BASE, "size": 3})
@example(values={**BASE, "mode": 3})
@example(values={**BASE, "small": -3})
@example(values={**BASE, "small": 4})
@example(values={**BASE, "sizes": {"a": 0}})
@example(values={**BASE, "sizes": {"a": 1, "b": 1, "c": 2}})
@example(values=BASE)
def test_protovalidate_and_the_server_refuse_the_same_inputs(tree: ProtoTree, values: dict[str, Any]) -> None:
    message = _message(tree, values)
    client_accepts = not protovalidate.collect_violations(message)
    with grpc.insecure_channel(ADDRESS[0]) as channel:
        server_accepts = _server_accepts(channel, message.SerializeToString())
    assert client_accepts == server_accepts, (values, protovalidate.collect_violations(message))


ADDRESS: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def server(tree: ProtoTree) -> Any:
    with running([CheckedModel], tree) as (served, address):
        ADDRESS[:] = [address]
        yield served


def test_a_valid_input_passes_both(tree: ProtoTree) -> None:
    message = _message(tree, BASE)
    assert protovalidate.collect_violations(message) == []
    with grpc.insecure_channel(ADDRESS[0]) as channel:
        assert _server_accepts(channel, message.SerializeToString())


def test_the_policy_key_turns_it_on_for_register_and_render(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from protoreg.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.protoreg]\nprotovalidate = true\n", encoding="utf-8")
    base = ["--db", f"sqlite:///{tmp_path / 'r.db'}", "--protos", "protos"]
    result = CliRunner().invoke(main, [*base, "register", "tests.test_protovalidate:CheckedModel"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "protos" / VALIDATE_PROTO).is_file()
    assert "buf.validate.field" in (tmp_path / "protos/checked_model/v1/checked_model.proto").read_text()
    assert CliRunner().invoke(main, [*base, "render", "--check"]).exit_code == 0
    # without the key, the same registry renders no rules, and the tree is stale
    (tmp_path / "pyproject.toml").write_text("[tool.protoreg]\nprotovalidate = false\n", encoding="utf-8")
    assert CliRunner().invoke(main, [*base, "render", "--check"]).exit_code == 1
    (tmp_path / "pyproject.toml").write_text('[tool.protoreg]\nprotovalidate = "yes"\n', encoding="utf-8")
    refused = CliRunner().invoke(main, [*base, "render", "--check"])
    assert refused.exit_code == 2
    assert '"protovalidate" in [tool.protoreg]' in refused.output and "must be true or false" in refused.output


@pytest.mark.parametrize(("proto_type", "contract", "rules"), [
    ("int64", {"ge": -1, "le": 1e20}, ["(buf.validate.field).int64 = {gte: -1}"]),
    ("uint32", {"ge": -1, "lt": 5}, ["(buf.validate.field).uint32 = {lt: 5}"]),
    ("int64", {"gt": 0.5}, ["(buf.validate.field).int64 = {gt: 0}"]),
    ("uint64", {"multiple_of": 3}, ['(buf.validate.field).cel = {id: "multiple_of", message: "must be a multiple '
                                    'of 3", expression: "this % 3u == 0u"}']),
    ("double", {"multiple_of": 0.5, "lt": 2}, ["(buf.validate.field).double = {lt: 2.0}"]),
    ("bytes", {"max_length": 3}, ["(buf.validate.field).bytes = {max_len: 3}"]),
])
def test_field_rules_hold_what_the_type_can_say(proto_type: str, contract: dict[str, Any], rules: list[str]) -> None:
    from protoreg.registry import ir
    from protoreg.registry.contract import Contract
    from protoreg.registry.protovalidate import field_rules, unmapped

    f = ir.Field("x", 1, proto_type, contract=Contract(**contract))
    assert field_rules(f) == rules
    assert bool(unmapped(f)) == (proto_type == "double" and "multiple_of" in contract)
    assert field_rules(ir.Field("x", 1, proto_type, required=True)) == []  # nothing recorded: no rules


def test_the_server_compiles_a_tree_without_its_copy_of_validate_proto(protos: Path, tmp_path: Path) -> None:
    """protoc's include path holds protoreg's own copy, so a tree deployed without it still loads."""
    import shutil

    copy = tmp_path / "protos"
    shutil.copytree(protos, copy)
    shutil.rmtree(copy / "buf")
    tree = load_protos(copy)
    assert tree.release("checked_model", 1) is not None
    assert tree.pool.FindFileByName(VALIDATE_PROTO) is not None


def test_implicit_presence_fields_get_no_required_rule() -> None:
    """An adopted field with implicit presence reads absent as zero, which the server answers, so
    protovalidate's ``required`` (non-zero) or ``not_in: [0]`` would refuse what the server takes."""
    from protoreg.registry import ir
    from protoreg.registry.contract import Contract
    from protoreg.registry.protovalidate import field_rules

    explicit = ir.Field("x", 1, "double", required=True, contract=Contract())
    implicit = ir.Field("x", 1, "double", label="singular", required=True, contract=Contract())
    assert field_rules(explicit) == ["(buf.validate.field).required = true"]
    assert field_rules(implicit) == []
    enum = ir.Field("e", 2, "Status", kind="enum", label="singular", required=True, contract=Contract())
    assert field_rules(enum) == ["(buf.validate.field).enum = {defined_only: true}"]
    assert "Required." not in implicit.contract_words and "Required." in explicit.contract_words
