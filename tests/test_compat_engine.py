"""The engine over IR pairs, direction-aware verdicts through a real registry, history checks,
and the hypothesis properties: ``check(a, a)`` finds nothing; one more change never lowers the
required bump."""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from protoreg.registry import ir
from protoreg.registry.compat.engine import check_release, compare
from protoreg.registry.compat.findings import Finding, max_bump
from protoreg.registry.compat.gate import BumpTooSmallError, ReleaseGate, check_schema
from protoreg.registry.compat.view import build_view
from protoreg.registry.database import open_registry
from protoreg.registry.registration import register_release
from protoreg.registry.schema import extract_schema
from protoreg.registry.versioning import bump_rank
from tests.conftest import make_model
from tests.evolution import build_model, evolutions

# -- IR helpers ----------------------------------------------------------------------------


def package(
    *messages: ir.Message, enums: tuple[ir.Enum, ...] = (), version: str = "1.0.0", name: str = "demo"
) -> ir.Package:
    service = ir.Service("DemoService", (ir.Method("Predict", "PredictRequest", "PredictResponse"),))
    return ir.Package(
        f"{name}.v{version.split('.')[0]}",
        name,
        version=version,
        messages=messages,
        enums=enums,
        services=(service,),
    )


def fields(*items: ir.Field, name: str = "PredictRequest", **kw: Any) -> ir.Message:
    return ir.Message(name, tuple(items), **kw)


def run(
    before: ir.Package, after: ir.Package, history: tuple[ir.Package, ...] = (), by_name: bool = True
) -> list[Finding]:
    views = [build_view([p], qualified=False, label=p.version) for p in history]
    b = build_view([before], qualified=False, label=before.version)
    a = build_view([after], qualified=False, label=after.version)
    return compare(b, a, history=[*views, b], pair_by_name=by_name)


def rules_of(findings: list[Finding]) -> set[str]:
    return {f.rule for f in findings}


AGE = ir.Field("age", 1, "int64", required=True)
NAME = ir.Field("name", 2, "string")
SCORE = ir.Field("score", 1, "double", required=True)
RESP = fields(SCORE, name="PredictResponse")
BASE = package(fields(AGE, NAME), RESP)


@pytest.mark.parametrize(
    ("after", "expected", "bump"),
    [
        (
            package(fields(AGE, NAME, ir.Field("x", 3, "string", required=True)), RESP),
            {"FIELD_ADDED_REQUIRED"},
            "major",
        ),
        (package(fields(AGE, NAME, ir.Field("x", 3, "string")), RESP), {"FIELD_ADDED_OPTIONAL"}, "minor"),
        (
            package(
                fields(AGE, NAME),
                fields(SCORE, ir.Field("y", 2, "string", required=True), name="PredictResponse"),
            ),
            {"FIELD_ADDED_REQUIRED"},
            "minor",
        ),
        (
            package(fields(AGE, reserved_numbers=(ir.ReservedRange(2, 2),), reserved_names=("name",)), RESP),
            {"FIELD_REMOVED"},
            "minor",
        ),
        (
            package(
                fields(AGE, NAME),
                fields(
                    name="PredictResponse",
                    reserved_numbers=(ir.ReservedRange(1, 1),),
                    reserved_names=("score",),
                ),
            ),
            {"FIELD_REMOVED"},
            "major",
        ),
        (
            package(fields(AGE), RESP),
            {"FIELD_REMOVED", "FIELD_REMOVED_NUMBER_NOT_RESERVED", "FIELD_REMOVED_NAME_NOT_RESERVED"},
            "major",
        ),
        (package(fields(AGE, replace(NAME, name="title")), RESP), {"FIELD_RENAMED"}, "major"),
        (
            package(fields(replace(AGE, type="int32"), NAME), RESP),
            {"FIELD_TYPE_CHANGED_JSON_INCOMPATIBLE"},
            "major",
        ),
        (
            package(fields(replace(AGE, type="uint64"), NAME), RESP),
            {"FIELD_TYPE_CHANGED_COMPATIBLE"},
            "major",
        ),
        (
            package(fields(replace(AGE, type="string"), NAME), RESP),
            {"FIELD_TYPE_CHANGED_INCOMPATIBLE"},
            "major",
        ),
        (package(fields(replace(AGE, label="repeated"), NAME), RESP), {"FIELD_CARDINALITY_CHANGED"}, "major"),
        (package(fields(AGE, replace(NAME, required=True)), RESP), {"FIELD_MADE_REQUIRED"}, "major"),
        (package(fields(replace(AGE, required=False), NAME), RESP), {"FIELD_MADE_OPTIONAL"}, "minor"),
        (
            package(fields(AGE, NAME), fields(replace(SCORE, required=False), name="PredictResponse")),
            {"FIELD_MADE_OPTIONAL"},
            "major",
        ),
        (package(fields(AGE, replace(NAME, label="singular")), RESP), {"FIELD_PRESENCE_CHANGED"}, "major"),
        (package(fields(AGE, NAME), RESP, fields(name="Extra")), {"MESSAGE_ADDED"}, "minor"),
    ],
)
def test_field_rules_and_directions(after: ir.Package, expected: set[str], bump: str) -> None:
    findings = run(BASE, after)
    assert rules_of(findings) == expected
    assert max_bump([f.required_bump for f in findings]) == bump


def test_every_finding_is_one_sentence_naming_both_values() -> None:
    findings = run(BASE, package(fields(replace(AGE, type="string"), NAME), RESP), by_name=False)
    (f,) = findings
    assert f.message == 'Field "age" (1) on "PredictRequest" changed type from "int64" to "string".'
    assert (f.before, f.after, f.path, f.direction) == ("int64", "string", "PredictRequest.age", "request")


def test_enum_value_added_in_a_response_is_minor_with_a_warning() -> None:
    colour = ir.Enum("Colour", (ir.EnumValue("COLOUR_UNSPECIFIED", 0), ir.EnumValue("COLOUR_RED", 1)))
    resp = fields(ir.Field("colour", 1, "Colour", "enum"), name="PredictResponse")
    req = fields(AGE)
    before = package(req, resp, enums=(colour,))
    grown = replace(colour, values=(*colour.values, ir.EnumValue("COLOUR_BLUE", 2)))
    after = package(req, resp, enums=(grown,), version="1.1.0")
    releases = [_release(before)]
    report = check_release("demo", releases, after, "1.1.0")
    assert report.passed and report.required_bump == "minor"
    (finding,) = report.findings
    assert (finding.rule, finding.direction, finding.level) == ("ENUM_VALUE_ADDED", "response", "warning")


def test_request_and_response_directions_reach_nested_messages_and_stream_wrappers() -> None:
    inner = fields(ir.Field("v", 1, "double"), name="Inner")
    req = fields(ir.Field("inner", 1, "Inner", "message"))
    resp = fields(ir.Field("inner", 1, "Inner", "message"), name="PredictResponse")
    view = build_view([package(req, resp, inner)], qualified=False)
    assert view.direction("Inner") == "both"
    assert view.direction("PredictRequest") == "request"
    assert view.direction("Orphan") == "both"


def test_check_of_a_package_against_itself_finds_nothing_for_the_iris_model() -> None:
    from iris_model.model import IrisModel

    from protoreg.registry.numbering import History, allocate_numbers

    pkg = allocate_numbers(History(), extract_schema(IrisModel)).package
    assert run(pkg, pkg, history=(pkg,)) == []


class _Release:
    def __init__(self, pkg: ir.Package, fingerprint: str = "x") -> None:
        from protoreg.registry.versioning import parse_version

        self.package, self.version, self.fingerprint = pkg, pkg.version, fingerprint
        self.parsed_version = parse_version(pkg.version)


def _release(pkg: ir.Package) -> Any:
    return _Release(pkg)


# -- through a real registry ---------------------------------------------------------------


class Species(StrEnum):
    setosa = "setosa"
    versicolor = "versicolor"


class In1(BaseModel):
    age: int
    height: float = Field(default=1.0)


class Out1(BaseModel):
    species: Species
    score: float


def register(url: str, version: str, inp: type[BaseModel], out: type[BaseModel], gate: bool = True) -> Any:
    with open_registry(url) as registry:
        schema = extract_schema(make_model("demo", version, inp, out))
        return register_release(registry, schema, gate=ReleaseGate() if gate else None)


def check(url: str, version: str, inp: type[BaseModel], out: type[BaseModel], against: str | None = None) -> Any:
    with open_registry(url) as registry:
        return check_schema(registry, extract_schema(make_model("demo", version, inp, out)), against=against)


def test_direction_aware_verdicts_through_the_registry(sqlite_url: str) -> None:
    register(sqlite_url, "1.0.0", In1, Out1)

    class InRequired(BaseModel):
        age: int
        height: float = Field(default=1.0)
        weight: float

    report = check(sqlite_url, "1.1.0", InRequired, Out1)
    assert not report.passed and report.required_bump == "major"
    assert [f.rule for f in report.findings] == ["FIELD_ADDED_REQUIRED"]
    assert report.summary() == "demo 1.1.0 needs a new major version: 1 major findings"
    assert check(sqlite_url, "2.0.0", InRequired, Out1).passed

    class OutMore(BaseModel):
        species: Species
        score: float
        confidence: float

    report = check(sqlite_url, "1.1.0", In1, OutMore)
    assert report.passed and report.required_bump == "minor"
    assert not check(sqlite_url, "1.0.1", In1, OutMore).passed

    class InLess(BaseModel):
        age: int

    report = check(sqlite_url, "1.1.0", InLess, Out1)
    assert report.passed and [f.rule for f in report.findings] == [
        "FIELD_REMOVED", "FIELD_REMOVED_WITHOUT_DEPRECATION"]

    class OutLess(BaseModel):
        species: Species

    report = check(sqlite_url, "1.1.0", In1, OutLess)
    assert not report.passed and report.required_bump == "major"

    # the same enum, one value more
    grown = StrEnum("Species", {"setosa": "setosa", "versicolor": "versicolor", "virginica": "virginica"})

    class OutEnum(BaseModel):
        species: grown  # type: ignore[valid-type]
        score: float

    report = check(sqlite_url, "1.1.0", In1, OutEnum)
    assert report.passed
    assert [(f.rule, f.level) for f in report.findings] == [("ENUM_VALUE_ADDED", "warning")]


def test_zero_x_versions_let_a_minor_bump_break(sqlite_url: str) -> None:
    register(sqlite_url, "0.3.0", In1, Out1)

    class OutLess(BaseModel):
        species: Species

    assert check(sqlite_url, "0.4.0", In1, OutLess).passed
    report = check(sqlite_url, "0.3.1", In1, OutLess)
    assert not report.passed and report.declared_bump == "minor"
    assert "0.x" in report.summary()

    class OutMore(BaseModel):
        species: Species
        score: float
        extra: float = 0.0

    assert check(sqlite_url, "0.3.1", In1, OutMore).passed


def test_version_rules(sqlite_url: str) -> None:
    register(sqlite_url, "1.0.0", In1, Out1)
    register(sqlite_url, "1.1.0", In1, Out1)
    assert check(sqlite_url, "1.1.0", In1, Out1).findings == ()

    class InMore(BaseModel):
        age: int
        height: float = Field(default=1.0)
        note: str | None = None

    same = check(sqlite_url, "1.1.0", InMore, Out1)
    assert not same.passed and "VERSION_NOT_BUMPED" in {f.rule for f in same.findings}
    back = check(sqlite_url, "1.0.5", In1, Out1)
    assert not back.passed and [f.rule for f in back.findings] == ["VERSION_WENT_BACKWARDS"]
    assert "goes backwards" in back.summary()
    against = check(sqlite_url, "1.2.0", InMore, Out1, against="1.0.0")
    assert against.baseline_version == "1.0.0" and against.passed


def test_removed_then_readded_with_another_type_is_caught_across_history(sqlite_url: str) -> None:
    """Removed in 1.1, re-added as a string in 2.0: only history knows "age" was an int64."""
    register(sqlite_url, "1.0.0", In1, Out1)

    class NoAge(BaseModel):
        height: float = Field(default=1.0)

    register(sqlite_url, "1.1.0", NoAge, Out1)

    class AgeText(BaseModel):
        height: float = Field(default=1.0)
        age: str | None = None

    report = check(sqlite_url, "1.2.0", AgeText, Out1)
    assert not report.passed
    rules = {f.rule for f in report.findings}
    assert "RESERVED_NAME_REUSED" in rules
    reused = next(f for f in report.findings if f.rule == "RESERVED_NAME_REUSED")
    assert '"age"' in reused.message and "int64" in reused.message and "1.0.0" in reused.message

    # The same field coming back with its old type gets its number back: a plain addition.
    class AgeBack(BaseModel):
        height: float = Field(default=1.0)
        age: int | None = None

    back = check(sqlite_url, "1.2.0", AgeBack, Out1)
    assert back.passed, [f.message for f in back.findings]
    assert {f.rule for f in back.findings} == {"FIELD_ADDED_OPTIONAL"}


def test_register_gate_refuses_a_too_small_bump_and_writes_nothing(sqlite_url: str) -> None:
    register(sqlite_url, "1.0.0", In1, Out1)

    class OutLess(BaseModel):
        species: Species

    with pytest.raises(BumpTooSmallError) as caught:
        register(sqlite_url, "1.1.0", In1, OutLess)
    assert caught.value.exit_code == 100
    with open_registry(sqlite_url) as registry:
        assert [r.version for r in registry.releases("demo")] == ["1.0.0"]
    assert register(sqlite_url, "2.0.0", In1, OutLess).status == "created"


# -- properties ----------------------------------------------------------------------------

SCALAR = st.sampled_from(
    ["int32", "int64", "uint32", "sint64", "fixed32", "double", "float", "bool", "string", "bytes"]
)


@st.composite
def packages(draw: st.DrawFn) -> ir.Package:
    def message(name: str) -> ir.Message:
        count = draw(st.integers(1, 5))
        numbers = draw(st.lists(st.integers(1, 40), min_size=count, max_size=count, unique=True))
        items = tuple(
            ir.Field(
                f"f{n}",
                n,
                draw(SCALAR),
                label=draw(st.sampled_from(["optional", "repeated", "singular"])),
                required=draw(st.booleans()),
            )
            for n in numbers
        )
        reserved = tuple(sorted(set(range(41, 41 + draw(st.integers(0, 3))))))
        return ir.Message(
            name,
            items,
            reserved_numbers=ir.compress_ranges(reserved),
            reserved_names=tuple(f"old{n}" for n in reserved),
        )

    colour = ir.Enum("Colour", tuple(ir.EnumValue(f"COLOUR_{i}", i) for i in range(draw(st.integers(1, 4)))))
    resp = message("PredictResponse")
    resp = replace(resp, fields=(*resp.fields, ir.Field("colour", 99, "Colour", "enum")))
    return package(message("PredictRequest"), resp, enums=(colour,))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(packages())
def test_check_of_anything_against_itself_finds_nothing(pkg: ir.Package) -> None:
    assert run(pkg, pkg, history=(pkg,)) == []
    assert run(pkg, pkg, by_name=False) == []


def _mutate(pkg: ir.Package, op: str, index: int, draw_type: str) -> ir.Package:
    """Apply one change to field slot ``index`` of PredictRequest or PredictResponse."""
    msg_name = "PredictRequest" if index % 2 == 0 else "PredictResponse"
    message = pkg.message(msg_name)
    assert message is not None
    items = list(message.fields)
    target = index // 2
    if op == "add":
        items.append(ir.Field(f"new{index}", 200 + index, draw_type, required=index % 3 == 0))
    elif target < len(items) and items[target].name.startswith("f"):
        f = items[target]
        if op == "remove":
            items[target] = replace(f, name=f"gone{index}", number=-1)
        elif op == "rename":
            items[target] = replace(f, name=f"renamed{index}")
        elif op == "retype":
            items[target] = replace(f, type=draw_type)
        elif op == "required":
            items[target] = replace(f, required=not f.required)
    new = replace(message, fields=tuple(x for x in items if x.number != -1))
    return replace(pkg, messages=tuple(new if m.name == msg_name else m for m in pkg.messages))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    packages(),
    st.lists(
        st.tuples(st.sampled_from(["add", "remove", "rename", "retype", "required"]), SCALAR),
        min_size=1,
        max_size=6,
    ),
)
def test_one_more_change_never_lowers_the_required_bump(pkg: ir.Package, ops: list[tuple[str, str]]) -> None:
    current = pkg
    previous_rank = 0
    for index, (op, type_name) in enumerate(ops):
        current = _mutate(current, op, index, type_name)
        bump = max_bump([f.required_bump for f in run(pkg, current, history=(pkg,))])
        assert bump_rank(bump) >= previous_rank
        previous_rank = bump_rank(bump)


# -- check and register agree on random evolutions -------------------------------------------


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(sequence=evolutions())
def test_register_refuses_exactly_what_check_fails(
    tmp_path_factory: pytest.TempPathFactory, sequence: list[tuple[str, Any]]
) -> None:
    url = f"sqlite:///{tmp_path_factory.mktemp('evolve') / 'r.db'}"
    registered = 0
    with open_registry(url) as registry:
        for version, spec in sequence:
            schema = extract_schema(build_model("evolve_model", version, spec))
            report = check_schema(registry, schema)
            assert report.passed == (bump_rank(report.declared_bump) >= bump_rank(report.required_bump))
            for finding in report.findings:
                assert finding.message.endswith(".") and finding.message.count(". ") <= 1
            try:
                register_release(registry, schema, gate=ReleaseGate())
            except BumpTooSmallError as error:
                assert not report.passed and error.report.required_bump == report.required_bump
            else:
                assert report.passed, [f.message for f in report.findings]
                registered += 1
            if report.passed:
                # A registered release checked against itself finds nothing.
                assert check_schema(registry, schema).findings == ()
    assert registered >= 1
