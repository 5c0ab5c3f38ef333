"""A gate that fails closed, and the smaller defects of the CI-gate issue, each with its test:
committed protos the registry does not know, a new model said to be new (once), register and
check agreeing on a forgotten bump, diff and a declared rename, module:Class from the current
directory, a class serve could not create, and unknown keys under a field's protoreg extra."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from tests.project_support import Project

REF = "shop.models:ShopModel"


def test_protos_rendered_from_another_registry_stop_check_register_and_render_check(project: Project) -> None:
    project.model("1.0.0")
    assert project.cli("--db", "sqlite:///team.db", "register", REF).exit_code == 0
    project.model("2.0.0", outputs="score: float")
    assert project.cli("--db", "sqlite:///team.db", "register", REF).exit_code == 0
    sentence = ("The registry at sqlite:///fresh.db does not know shop_model 1.0.0 and shop_model 2.0.0, which "
                "proto_versions/ was rendered from (proto_versions/shop_model/v1/shop_model.proto, "
                "proto_versions/shop_model/v2/shop_model.proto): wrong --db?")
    # Another team's registry, which never saw shop_model.
    assert project.cli("--db", "sqlite:///fresh.db", "--protos", "elsewhere", "register", "iris_model").exit_code == 0
    for args in (["check", REF], ["register", REF], ["render", "--check"]):
        result = project.cli("--db", "sqlite:///fresh.db", *args)
        assert result.exit_code == 1, (args, result.output)
        assert sentence in result.output, result.output
    assert "shop_model" not in project.cli("--db", "sqlite:///fresh.db", "history", "iris_model").output
    # The registry that rendered them passes.
    assert project.cli("--db", "sqlite:///team.db", "check", REF).exit_code == 0
    assert project.cli("--db", "sqlite:///team.db", "render", "--check").exit_code == 0


def test_a_fresh_clone_registers_the_release_its_committed_tree_was_rendered_from(project: Project) -> None:
    """The README's `make run` on a fresh machine: no protoreg.db, the repository's committed
    proto_versions/. Registering iris_model 1.0.0 renders that tree again byte for byte, so it is
    its source and not a wrong --db; a tree it would not render is still refused."""
    committed = Path(__file__).resolve().parents[1] / "proto_versions"
    shutil.copytree(committed, project.root / "proto_versions")
    before = {p: p.read_bytes() for p in (project.root / "proto_versions").rglob("*") if p.is_file()}
    result = project.cli("register", "iris_model")
    assert result.exit_code == 0, result.output
    assert {p: p.read_bytes() for p in before} == before
    assert project.cli("check", "iris_model").exit_code == 0

    # The same, but the committed file was rendered from other numbers: refused, nothing recorded.
    other = project.root / "other"
    shutil.copytree(committed, other)
    proto = other / "iris_model" / "v1" / "iris_model.proto"
    proto.write_text(proto.read_text().replace("sepal_length = 1;", "sepal_length = 9;"))
    refused = project.cli("--db", "sqlite:///other.db", "--protos", "other", "register", "iris_model")
    assert refused.exit_code == 1, refused.output
    assert "does not know iris_model 1.0.0, which other/ was rendered from" in refused.output
    history = project.cli("--db", "sqlite:///other.db", "history", "iris_model")
    assert history.exit_code == 1 and 'Model "iris_model" is not in the registry' in history.output, history.output


def test_a_new_model_says_so_once(project: Project) -> None:
    project.model("1.0.0")
    assert project.cli("--db", "sqlite:///r.db", "--protos", "elsewhere", "register", "iris_model").exit_code == 0
    result = project.cli("--db", "sqlite:///r.db", "check", REF)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "shop_model 1.0.0: a new model: the registry at sqlite:///r.db has no release of shop_model, and "
        "proto_versions/ holds no file of it",
        "shop_model 1.0.0 passed (first release, nothing to compare): no findings",
    ]
    assert result.output.count("first release") == 1


def test_commands_that_read_never_create_a_database_and_say_where_to_look(project: Project) -> None:
    project.model("1.0.0")
    sentence = ('There is no registry at sqlite:///missing.db: the file "missing.db" does not exist; point --db '
                "(or $PROTOREG_DB, or db under [tool.protoreg]) at the registry")
    reads = (["check", REF], ["diff", "shop_model", "1.0.0", "1.0.0"], ["history", "shop_model"],
             ["fields", "shop_model"], ["render"], ["render", "--check"], ["verify"], ["export", "--to", "text"],
             ["site", "--out", "site"])
    for args in reads:
        result = project.cli("--db", "sqlite:///missing.db", *args)
        assert result.exit_code == 1, (args, result.output)
        assert sentence in result.output, (args, result.output)
        assert not (project.root / "missing.db").exists(), args
    # The default URL too: a fresh runner with no protoreg.db is not a first release.
    result = project.cli("check", REF)
    assert result.exit_code == 1 and "There is no registry at sqlite:///protoreg.db" in result.output, result.output
    assert not (project.root / "protoreg.db").exists()


def test_a_database_that_is_not_a_registry_is_refused_untouched(project: Project) -> None:
    other = project.root / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE models (name TEXT)")
    before = other.read_bytes()
    for args in (["verify"], ["history", "shop_model"], ["check", REF]):
        project.model("1.0.0")
        result = project.cli("--db", "sqlite:///other.db", *args)
        assert result.exit_code == 1, (args, result.output)
        assert ("The database at sqlite:///other.db is not a protoreg registry (it holds other tables (models)) "
                "and was not changed") in result.output, result.output
        assert other.read_bytes() == before, args
    empty = project.root / "empty.db"
    empty.touch()
    result = project.cli("--db", "sqlite:///empty.db", "history", "shop_model")
    assert result.exit_code == 1 and "is not a protoreg registry (it is empty)" in result.output, result.output
    assert empty.read_bytes() == b""


def test_register_refuses_a_forgotten_bump_with_exit_100_as_check_does(project: Project) -> None:
    project.model("1.0.0")
    assert project.cli("--db", "sqlite:///r.db", "register", REF).exit_code == 0
    project.model("1.0.0", outputs="score: float\n    label: str\n    extra: int = 0")  # changed, not bumped
    check = project.cli("--db", "sqlite:///r.db", "check", REF)
    register = project.cli("--db", "sqlite:///r.db", "register", REF)
    assert (check.exit_code, register.exit_code) == (100, 100), register.output
    assert "VERSION_NOT_BUMPED" in register.output
    assert "shop_model 1.0.0: refused; nothing was registered" in register.output
    # A version below the newest too.
    project.model("2.0.0", outputs="score: float")
    assert project.cli("--db", "sqlite:///r.db", "register", REF).exit_code == 0
    project.model("1.5.0", outputs="score: float")
    assert project.cli("--db", "sqlite:///r.db", "check", REF).exit_code == 100
    register = project.cli("--db", "sqlite:///r.db", "register", REF)
    assert register.exit_code == 100 and "VERSION_WENT_BACKWARDS" in register.output


def test_diff_across_a_registered_rename_reports_no_reused_number(project: Project) -> None:
    rename = 'alias: str = Field("", json_schema_extra={"protoreg": {"renamed_from": "nickname"}})'
    for version, inputs in (("1.0.0", "age: int"), ("1.1.0", 'age: int\n    nickname: str = ""'),
                            ("2.0.0", f"age: int\n    {rename}")):
        project.model(version, inputs=inputs)
        assert project.cli("--db", "sqlite:///r.db", "register", REF).exit_code == 0
    result = project.cli("--db", "sqlite:///r.db", "diff", "shop_model", "1.0.0", "2.0.0")
    assert result.exit_code == 0, result.output
    assert "FIELD_NUMBER_REUSED" not in result.output
    assert 'Field "alias" (2) was added to "PredictRequest"' in result.output


def test_module_class_refs_resolve_from_the_current_directory_without_shadowing_protoreg(project: Project) -> None:
    # A project whose own packages are called service and registry, like protoreg's.
    project.model("1.0.0")
    project.write("service/__init__.py", "")
    project.write("service/models.py", (project.root / "shop/models.py").read_text())
    project.write("registry/__init__.py", 'raise RuntimeError("the project\'s registry package was imported")\n')
    result = project.run("--db", "sqlite:///r.db", "register", "service.models:ShopModel")
    assert result.returncode == 0, result.stderr
    assert "shop_model 1.0.0: registered (shop_model.v1)" in result.stdout
    check = project.run("--db", "sqlite:///r.db", "check", "service.models:ShopModel")
    assert check.returncode == 0, check.stderr


def test_a_class_serve_could_not_create_fails_check_and_register(project: Project) -> None:
    project.model("1.0.0")
    project.write("shop/abstract.py", '''import ml_base

from shop.models import ShopInput, ShopOutput


class Churn(ml_base.MLModel):
    qualified_name = "shop_model"
    display_name = "Shop"
    description = "d"
    version = "1.0.0"
    input_schema = ShopInput
    output_schema = ShopOutput

    def predict(self, data):
        return ShopOutput(score=1.0)


class NeedsPath(Churn):
    def __init__(self, path):
        self.path = path


class Fine(Churn):
    def __init__(self):
        self.weights = None
''')
    assert project.cli("--db", "sqlite:///r.db", "--protos", "elsewhere", "register", "iris_model").exit_code == 0
    expected = {
        "shop.abstract:Churn": 'Model class "shop.abstract:Churn" cannot be instantiated, so protoreg serve could '
                               "not create it: it does not define __init__ (abstract in ml_base.ml_model.MLModel)",
        "shop.abstract:NeedsPath": 'Model class "shop.abstract:NeedsPath" cannot be created without arguments (path)',
    }
    for ref, sentence in expected.items():
        for command in ("check", "register"):
            result = project.cli("--db", "sqlite:///r.db", command, ref)
            assert result.exit_code == 1, result.output
            assert sentence in result.output
            assert "Traceback" not in result.output
    assert project.cli("--db", "sqlite:///r.db", "check", "shop.abstract:Fine").exit_code == 0


def test_unknown_keys_under_a_fields_protoreg_extra_are_an_error(project: Project) -> None:
    cases = {
        '{"renamed_form": "name"}': 'unknown key "renamed_form" in json_schema_extra["protoreg"] (did you mean '
                                    '"renamed_from"?); the known keys are type, renamed_from',
        '{"typ": "sint32"}': 'unknown key "typ" in json_schema_extra["protoreg"] (did you mean "type"?)',
        '"sint32"': 'json_schema_extra["protoreg"] must be a dict with the keys type, renamed_from, not str',
    }
    for extra, sentence in cases.items():
        project.model("1.0.0", inputs=f'age: int = Field(0, json_schema_extra={{"protoreg": {extra}}})')
        result = project.cli("--db", "sqlite:///r.db", "check", REF)
        assert result.exit_code == 1, result.output
        assert f'Error: Model "shop_model": "PredictRequest.age": {sentence}' in result.output


def test_check_changed_checks_the_models_a_commit_touches(project: Project) -> None:
    project.model("1.0.0")
    project.write("pyproject.toml", f'[tool.protoreg]\ndb = "reg"\nmodels = ["{REF}"]\n')
    assert project.cli("register", "--all").exit_code == 0
    project.model("1.1.0", outputs="score: float")  # a removed output field under a minor bump
    assert project.cli("check", "--changed", "README.md").output.startswith("no model is touched")
    for changed in ("shop/models.py", "reg/shop_model.txt", "proto_versions/shop_model/v1/shop_model.proto",
                    "pyproject.toml"):
        result = project.cli("check", "--changed", changed)
        assert result.exit_code == 100, (changed, result.output)
