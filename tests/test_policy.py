"""``[tool.protoreg]`` in pyproject.toml: the registry, which models --all covers, which categories
gate, rule exceptions with their reasons in every report, and unknown keys refused."""

from __future__ import annotations

import json
from xml.etree import ElementTree

from tests.project_support import Project

REF = "shop.models:ShopModel"
RENAMED = 'full_name: str = Field(json_schema_extra={"protoreg": {"renamed_from": "name"}})'


def _policy(project: Project, body: str) -> None:
    project.write("pyproject.toml", f'[project]\nname = "shop"\n\n[tool.protoreg]\ndb = "reg"\n{body}\n')


def test_unknown_keys_are_an_error_that_lists_the_known_ones(project: Project) -> None:
    project.model("1.0.0")
    cases = {
        'gate-categores = ["WIRE"]': 'Unknown key "gate-categores" in [tool.protoreg] of {path} (did you mean '
                                     '"gate-categories"?); the known keys are db, models, gate-categories, exceptions',
        '[[tool.protoreg.exceptions]]\nrule = "FIELD_REMOVED"\nreason = "x"\nmodle = "shop_model"':
            'Unknown key "modle" in exceptions[0] of [tool.protoreg] of {path} (did you mean "model"?); the known '
            "keys are rule, reason, model, path",
        '[[tool.protoreg.exceptions]]\nrule = "FIELD_REMOVED"': "has no reason; say why FIELD_REMOVED may pass",
        '[[tool.protoreg.exceptions]]\nrule = "FIELD_REMOVD"\nreason = "x"':
            "names rule 'FIELD_REMOVD', which is not a rule (did you mean \"FIELD_REMOVED\"?)",
        '[[tool.protoreg.exceptions]]\nrule = "VERSION_NOT_BUMPED"\nreason = "x"': "which always gates",
        'gate-categories = ["WIRE", "JSON"]': 'Unknown category "JSON" in "gate-categories"',
    }
    path = project.root / "pyproject.toml"
    for body, sentence in cases.items():
        _policy(project, body)
        for command in (["check", REF], ["register", REF], ["history", "shop_model"]):
            result = project.cli(*command)
            assert result.exit_code == 2, (body, result.output)
            assert sentence.format(path=path) in result.output, result.output


def test_models_and_db_make_check_all_need_no_flags(project: Project) -> None:
    project.model("1.0.0")
    _policy(project, f'models = ["{REF}"]')
    registered = project.cli("register", "--all")
    assert registered.exit_code == 0, registered.output
    assert (project.root / "reg" / "shop_model.txt").exists()
    project.model("1.1.0", outputs="score: float")
    result = project.cli("check", "--all")
    assert result.exit_code == 100, result.output
    assert "iris_model" not in result.output  # the entry point is not in models


def test_a_category_that_does_not_gate_is_a_warning(project: Project) -> None:
    project.model("1.0.0")
    _policy(project, "")
    assert project.cli("register", REF).exit_code == 0
    project.model("1.1.0", inputs=f"age: int\n    {RENAMED}")  # a rename: WIRE_JSON, major
    assert project.cli("check", REF).exit_code == 100
    _policy(project, 'gate-categories = ["WIRE", "SOURCE", "SEMANTIC"]')
    result = project.cli("check", REF)
    assert result.exit_code == 0, result.output
    assert ("warning: Field 2 on \"PredictRequest\" changed name from \"name\" to \"full_name\". [FIELD_RENAMED, "
            "WIRE_JSON, request, major] (does not gate: category WIRE_JSON does not gate (gate-categories in "
            "[tool.protoreg]))") in result.output
    assert result.output.rstrip().endswith("(1 more that do not gate, see [tool.protoreg])")
    assert project.cli("register", REF).exit_code == 0  # register follows the same policy


def test_an_exception_needs_a_reason_and_every_report_prints_it(project: Project) -> None:
    project.model("1.0.0")
    reason = "no client reads label since March (JIRA-12)"
    _policy(project, f'[[tool.protoreg.exceptions]]\nrule = "FIELD_REMOVED"\nmodel = "shop_model"\n'
                     f'path = "PredictResponse.label"\nreason = "{reason}"')
    assert project.cli("register", REF).exit_code == 0
    project.model("1.1.0", outputs="score: float")
    text = project.cli("check", REF)
    assert text.exit_code == 0, text.output
    assert text.output.startswith(f"exception FIELD_REMOVED for shop_model at PredictResponse.label "
                                  f"([tool.protoreg]): {reason} (covers 1 findings here)")
    data = json.loads(project.cli("check", REF, "--format", "json").output)
    assert data["exceptions"] == [{"rule": "FIELD_REMOVED", "model": "shop_model", "path": "PredictResponse.label",
                                   "reason": reason, "matched": 1}]
    assert data["findings"][0]["waived"].endswith(reason) and data["passed"]
    github = project.cli("check", REF, "--format", "github").output
    assert "::notice title=protoreg exception FIELD_REMOVED::exception FIELD_REMOVED" in github
    assert reason in github
    junit = ElementTree.fromstring(project.cli("check", REF, "--format", "junit").output)
    assert reason in junit.find("testsuite/properties/property").get("value")  # type: ignore[union-attr]
    assert junit.get("skipped") == "1" and junit.get("failures") == "0"
    # A report where it covers nothing still names it.
    project.model("1.1.0", outputs="score: float\n    label: str\n    extra: int = 0")
    assert "covers 0 findings here" in project.cli("check", REF).output
