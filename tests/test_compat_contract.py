"""Field contracts: the before/after model fixtures of the contract rules, their comparisons, and
the property that a tighter request constraint never lowers the required bump.

Each directory under ``tests/contract_fixtures/`` holds ``before.py`` and ``after.py`` (each
defines ``Input`` and ``Output``, a model's pydantic classes) and ``expected.txt``: one
``RULE_ID direction bump`` line per finding, in order, when ``after`` (1.1.0) is checked against
``before`` (1.0.0) registered in a real SQLite registry. A directory holding a file ``legacy``
compares against a ``before`` snapshot without contracts, as releases registered before protoreg
recorded them are stored.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, create_model

from protoreg.registry import ir
from protoreg.registry.compat.engine import check_release, renames_of
from protoreg.registry.compat.gate import check_schema
from protoreg.registry.contract import Contract, compare_contracts, pattern_relation, read_contract
from protoreg.registry.database import open_registry
from protoreg.registry.numbering import History, allocate_numbers
from protoreg.registry.registration import register_release
from protoreg.registry.schema import ModelSchema, extract_schema
from protoreg.registry.versioning import bump_rank

FIXTURES = Path(__file__).resolve().parent / "contract_fixtures"
CASES = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"contract_fixture_{path.parent.name}_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model(inputs: type[BaseModel], outputs: type[BaseModel], version: str) -> type:
    return type("FixtureModel", (), {
        "qualified_name": "fixture_model", "display_name": "Fixture", "description": "A fixture.",
        "version": version, "input_schema": inputs, "output_schema": outputs,
    })


def schema_of(path: Path, version: str) -> ModelSchema:
    module = load(path)
    return extract_schema(model(module.Input, module.Output, version))


def strip_contracts(package: ir.Package) -> ir.Package:
    return dataclasses.replace(package, messages=tuple(
        dataclasses.replace(m, fields=tuple(dataclasses.replace(f, contract=None) for f in m.fields))
        for m in package.messages))


def findings_of(tmp_path: Path, case: str) -> list[Any]:
    root = FIXTURES / case
    before, after = schema_of(root / "before.py", "1.0.0"), schema_of(root / "after.py", "1.1.0")
    with open_registry(f"sqlite:///{tmp_path / 'registry.db'}") as registry:
        register_release(registry, before)
        if not (root / "legacy").exists():
            return list(check_schema(registry, after).findings)
        line = registry.release_line(after.model)
        assert line is not None
        releases = [dataclasses.replace(r, package=strip_contracts(r.package)) for r in line.load_all()]
        numbered = allocate_numbers(registry.history(after.model), after)
        report = check_release(after.model, releases, numbered.package, after.version, after.fingerprint,
                               renames=renames_of(after.to_dict()))
        return list(report.findings)


@pytest.mark.parametrize("case", CASES)
def test_contract_fixture_findings(tmp_path: Path, case: str) -> None:
    found = [f"{f.rule} {f.direction} {f.required_bump}" for f in findings_of(tmp_path, case)]
    assert found == (FIXTURES / case / "expected.txt").read_text(encoding="utf-8").splitlines()


def test_sentences_name_the_field_and_both_values(tmp_path: Path) -> None:
    (tightened,) = findings_of(tmp_path, "request_bound_tightened")
    assert tightened.message == (
        'Field "age" (1) on "PredictRequest" tightened its lower bound from ">= 0" to ">= 12".'
    )
    assert (tightened.before, tightened.after) == (">= 0", ">= 12")


def test_rename_hint_gives_the_exact_line_and_it_keeps_the_number(tmp_path: Path) -> None:
    hint = next(f for f in findings_of(tmp_path, "possibly_renamed") if f.rule == "FIELD_POSSIBLY_RENAMED")
    line = hint.message.split("`")[1]
    assert line == ("postcode: str = Field(pattern='^[0-9]{5}$', description='Where the customer lives.', "
                    'json_schema_extra={"protoreg": {"renamed_from": "zip_code"}})')
    assert hint.level == "warning"
    # Writing that line turns the removal and addition into a rename: the number is kept and the
    # hint goes away (it is a hint, never a silent rename).
    namespace: dict[str, Any] = {"Field": Field, "BaseModel": BaseModel}
    exec(f"class Input(BaseModel):\n    age: int\n    {line}\n", namespace)  # noqa: S102
    outputs = load(FIXTURES / "possibly_renamed" / "after.py").Output
    renamed = extract_schema(model(namespace["Input"], outputs, "1.1.0"))
    with open_registry(f"sqlite:///{tmp_path / 'renamed.db'}") as registry:
        register_release(registry, schema_of(FIXTURES / "possibly_renamed" / "before.py", "1.0.0"))
        report = check_schema(registry, renamed)
        numbered = allocate_numbers(registry.history("fixture_model"), renamed)
    assert not [f for f in report.findings if f.rule in ("FIELD_POSSIBLY_RENAMED", "FIELD_REMOVED")]
    request = numbered.package.message("PredictRequest")
    assert request is not None and request.field_by_name("postcode") is not None
    assert request.field_by_name("postcode").number == 2  # type: ignore[union-attr]


def test_a_legacy_baseline_is_said_so_and_not_guessed(tmp_path: Path) -> None:
    (finding,) = findings_of(tmp_path, "legacy_bound_tightened")
    assert "registered before protoreg recorded field contracts" in finding.message
    assert finding.level == "warning"


def test_a_release_registered_before_contracts_registers_again_as_a_no_op(tmp_path: Path) -> None:
    """A release stored without contracts (and fingerprinted without them) is still the same release."""
    schema = schema_of(FIXTURES / "request_bound_tightened" / "before.py", "1.0.0")
    numbered = allocate_numbers(History(), schema)
    assert schema.structure_fingerprint != schema.fingerprint
    legacy = strip_contracts(numbered.package)
    assert not legacy.contracts_recorded and numbered.package.contracts_recorded
    assert ir.package_from_dict(ir.package_to_dict(legacy)) == legacy
    assert "contract" not in json.dumps(ir.package_to_dict(legacy))
    from protoreg.registry.registration import fingerprint_against

    assert fingerprint_against(schema, legacy) == schema.structure_fingerprint
    assert fingerprint_against(schema, numbered.package) == schema.fingerprint


# -- reading pydantic --------------------------------------------------------------------------


def test_read_contract_covers_what_pydantic_expresses() -> None:
    from typing import Annotated, Literal

    from pydantic import conbytes, conint

    class Sample(BaseModel):
        a: int = Field(gt=0, le=10, multiple_of=2)
        b: Annotated[str, Field(min_length=2, max_length=5, pattern="^a")] | None = None
        c: list[float] = Field(default_factory=list, max_length=3)
        d: str = Field("x", deprecated="use e")
        e: Literal["x", "y"] = "x"
        f: bytes = Field(min_length=1)
        g: conbytes(max_length=3)  # type: ignore[valid-type]
        h: conint(ge=0, lt=5) | None = Field(None, multiple_of=2)  # type: ignore[valid-type]

    schema = extract_schema(model(Sample, create_model("Out", score=(float, ...)), "1.0.0"))
    request = schema.message("PredictRequest")
    assert request is not None
    contracts = {f.name: f.contract for f in request.fields}
    assert contracts["a"] == Contract(gt=0, le=10, multiple_of=2)
    assert contracts["b"] == Contract(default="null", min_length=2, max_length=5, pattern="^a")
    assert contracts["c"] == Contract(default="[]", max_length=3)
    assert contracts["d"] == Contract(default='"x"', deprecated="use e")
    assert contracts["e"] == Contract(default='"x"', choices=("x", "y"))
    assert contracts["f"] == Contract(min_length=1)
    assert contracts["g"] == Contract(max_length=3)
    assert contracts["h"] == Contract(default="null", ge=0, lt=5, multiple_of=2)


def test_read_contract_records_no_default_for_a_required_field() -> None:
    info = create_model("M", x=(int, Field(ge=1))).model_fields["x"]
    assert read_contract(info, required=True) == Contract(ge=1)


# -- comparisons -------------------------------------------------------------------------------


@pytest.mark.parametrize(("before", "after", "integral", "relation"), [
    (Contract(ge=0), Contract(ge=12), True, "tighter"),
    (Contract(ge=5), Contract(gt=4), True, None),  # the same integers
    (Contract(ge=5.0), Contract(gt=5.0), False, "tighter"),
    (Contract(le=5), Contract(), True, "looser"),
    (Contract(), Contract(lt=3), False, "tighter"),
    (Contract(multiple_of=2), Contract(multiple_of=4), True, "tighter"),
    (Contract(multiple_of=0.5), Contract(multiple_of=0.1), False, "looser"),
    (Contract(multiple_of=2), Contract(multiple_of=3), True, "changed"),
    (Contract(max_length=3), Contract(max_length=4), False, "looser"),
    (Contract(min_length=1), Contract(), False, "looser"),
])
def test_facets_compare_by_what_they_accept(before: Contract, after: Contract, integral: bool,
                                            relation: str | None) -> None:
    changes = compare_contracts(before, after, integral=integral)
    assert [c.relation for c in changes] == ([] if relation is None else [relation])


@pytest.mark.parametrize(("before", "after", "relation"), [
    ("^a$", "^a$", "same"),
    (None, "^a", "tighter"),
    ("^a", None, "looser"),
    ("^a", ".*", "looser"),
    ("^(a|b)$", "^(a|b|c)$", "looser"),
    ("^(?:a|b|c)$", "^(?:a|c)$", "tighter"),
    ("a|b", "b|a", "same"),
    ("^[0-9]{5}$", "^[0-9]{4,5}$", "changed"),  # true, but not proved: said to be a change
    ("^(a|b)$", "(a|b|c)", "changed"),  # other anchors
    ("(", "^a", "changed"),
])
def test_what_is_proved_about_patterns(before: str | None, after: str | None, relation: str) -> None:
    assert pattern_relation(before, after)[0] == relation


# -- the property: one more tighter request constraint never lowers the bump -------------------

BOUNDS = st.one_of(st.none(), st.integers(-5, 5))
CONTRACTS = st.builds(
    lambda ge, le, step, min_len, max_len: {k: v for k, v in {
        "ge": ge, "le": le, "multiple_of": step, "min_length": min_len, "max_length": max_len}.items()
        if v is not None},
    BOUNDS, BOUNDS, st.sampled_from([None, 1, 2, 3, 4]), st.one_of(st.none(), st.integers(0, 3)),
    st.one_of(st.none(), st.integers(3, 6)),
)


def _tighter(contract: dict[str, Any], baseline: dict[str, Any], which: str) -> dict[str, Any]:
    """``contract`` with ``which`` narrower than in both ``contract`` and ``baseline``."""
    out = dict(contract)
    values = [v for v in (contract.get(which), baseline.get(which)) if v is not None]
    if which == "ge":
        out["ge"] = max(values, default=-7) + 1
    elif which == "le":
        out["le"] = min(values, default=7) - 1
    elif which == "multiple_of":
        out["multiple_of"] = 2 * math.lcm(*(int(v) for v in values)) if values else 2
    elif which == "min_length":
        out["min_length"] = max(values, default=0) + 1
    else:
        out["max_length"] = min(values, default=8) - 1
    return out


def _package(request: dict[str, dict[str, Any]], response: dict[str, Any], version: str) -> ir.Package:
    fields = {name: (list[int] if name == "b" else int, Field(**c)) for name, c in request.items()}
    inputs = create_model("PIn", **fields)  # type: ignore[call-overload]
    outputs = create_model("POut", score=(int, Field(**response)))  # type: ignore[call-overload]
    return allocate_numbers(History(), extract_schema(model(inputs, outputs, version))).package


def _required(before: ir.Package, after: ir.Package) -> str:
    release = _Release(before)
    return check_release("fixture_model", [release], after, "1.1.0").required_bump


@dataclasses.dataclass(frozen=True)
class _Release:
    package: ir.Package
    model: str = "fixture_model"
    version: str = "1.0.0"
    fingerprint: str = ""

    @property
    def parsed_version(self) -> Any:
        from protoreg.registry.versioning import parse_version

        return parse_version(self.version)


@settings(max_examples=60, deadline=None)
@given(
    before=st.fixed_dictionaries({"a": CONTRACTS, "b": CONTRACTS}),
    after=st.fixed_dictionaries({"a": CONTRACTS, "b": CONTRACTS}),
    response_before=st.sampled_from([{}, {"ge": 0}, {"le": 3}]),
    response_after=st.sampled_from([{}, {"ge": 0}, {"le": 3}]),
    field=st.sampled_from(["a", "b"]),
    facet=st.sampled_from(["ge", "le", "multiple_of", "min_length", "max_length"]),
)
def test_a_tighter_request_constraint_never_lowers_the_bump(
    before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]], response_before: dict[str, Any],
    response_after: dict[str, Any], field: str, facet: str,
) -> None:
    """Any change of two request fields and a response bound, plus one request constraint narrower
    than in both releases, needs at least the bump of the change alone, and a major one. (Narrowing
    only relative to the new release may undo a loosening, which rightly needs less.)"""
    # lengths only on lists, bounds only on integers: keep each field one kind in both releases
    for contracts in (before, after):
        for name in contracts:
            contracts[name] = {k: v for k, v in contracts[name].items()
                               if ("length" in k) == (name == "b")}
    if ("length" in facet) != (field == "b"):
        facet = "max_length" if field == "b" else "ge"
    old = _package(before, response_before, "1.0.0")
    new = _package(after, response_after, "1.1.0")
    tighter = _package({**after, field: _tighter(after[field], before[field], facet)}, response_after, "1.1.0")
    plain, more = _required(old, new), _required(old, tighter)
    assert bump_rank(more) >= bump_rank(plain)
    assert more == "major"  # narrower than the baseline: old clients may send what is now refused
    assert _required(new, tighter) == "major"  # and than the release it narrows


ANY_CONTRACT = st.builds(
    Contract,
    default=st.one_of(st.none(), st.sampled_from(["null", "0", '"x"', "[]"])),
    gt=st.one_of(st.none(), st.integers(-3, 3), st.floats(-3, 3)),
    ge=st.one_of(st.none(), st.integers(-3, 3)),
    lt=st.one_of(st.none(), st.floats(-3, 3)),
    le=st.one_of(st.none(), st.integers(-3, 3)),
    multiple_of=st.one_of(st.none(), st.sampled_from([1, 2, 0.5, 0.1])),
    min_length=st.one_of(st.none(), st.integers(0, 3)),
    max_length=st.one_of(st.none(), st.integers(0, 3)),
    pattern=st.one_of(st.none(), st.sampled_from(["^a$", "a|b", "(", ".*", "^(x|yz)$"])),
    deprecated=st.one_of(st.none(), st.text(max_size=5)),
)


@settings(max_examples=200, deadline=None)
@given(contract=ANY_CONTRACT, integral=st.booleans())
def test_a_contract_compared_with_itself_has_no_change_and_survives_its_snapshot(contract: Contract,
                                                                                 integral: bool) -> None:
    from protoreg.registry.contract import contract_from_dict, contract_to_dict

    assert compare_contracts(contract, contract, integral=integral) == []
    assert contract_from_dict(json.loads(json.dumps(contract_to_dict(contract)))) == contract


@pytest.mark.parametrize(("contract", "required", "unit", "words"), [
    (Contract(ge=0.0, le=50.0), True, "characters", ["Required.", "Must be at least 0.0 and at most 50.0."]),
    (Contract(default="null", max_length=5), False, "characters", ["Optional; absent means no value.",
                                                                   "At most 5 characters."]),
    (Contract(default='"00000"', pattern="^[0-9]{5}$"), False, "characters",
     ['Optional; when absent, the model uses "00000".', 'Must match the regular expression "^[0-9]{5}$".']),
    (Contract(default="[]", min_length=1, max_length=1), False, "items", ["Optional; absent means empty.",
                                                                          "Exactly 1 items."]),
    (Contract(gt=0, multiple_of=5, deprecated="use other."), True, "bytes",
     ["Required.", "Must be greater than 0.", "Must be a multiple of 5.", "Deprecated: use other."]),
    (Contract(deprecated=""), False, "bytes", ["Optional.", "Deprecated."]),
])
def test_contracts_in_plain_words(contract: Contract, required: bool, unit: str, words: list[str]) -> None:
    from protoreg.registry.contract import describe

    assert describe(contract, required=required, unit=unit) == words
