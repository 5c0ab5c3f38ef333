"""The registry commands through click's runner, and the docs kept in step with the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from protoreg.cli import main
from protoreg.registry.protoc import compile_descriptor_set

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> click.testing.Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def cli(tmp_path: Path):  # type: ignore[no-untyped-def]
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    protos = tmp_path / "protos"

    def invoke(*args: str) -> click.testing.Result:
        return run("--db", db, "--protos", str(protos), *args)

    invoke.protos = protos  # type: ignore[attr-defined]
    return invoke


def test_register_renders_and_is_idempotent(cli) -> None:  # type: ignore[no-untyped-def]
    first = cli("register", "iris_model")
    assert first.exit_code == 0, first.output
    assert "iris_model 1.0.0: registered (iris_model.v1)" in first.output
    assert "added PredictRequest.sepal_length = 1" in first.output
    proto = cli.protos / "iris_model" / "v1" / "iris_model.proto"
    assert proto.exists()
    second = cli("register", "iris_model")
    assert second.exit_code == 0
    assert "already registered with this schema" in second.output


def test_register_module_class_ref_and_dry_run(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("register", "--dry-run", "iris_model.model:IrisModel")
    assert result.exit_code == 0, result.output
    assert "would register" in result.output
    assert not cli.protos.exists()
    history = cli("history", "iris_model")
    assert history.exit_code == 1
    assert 'Model "iris_model" is not in the registry' in history.output


def test_rendered_files_compile_with_protoc(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("register", "--all").exit_code == 0
    files = compile_descriptor_set(cli.protos)
    names = {f.name for f in files.file}
    assert {"iris_model/v1/iris_model.proto", "protoreg/registry/v1/registry.proto"} <= names


def test_committed_proto_versions_match_a_fresh_registration(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("register", "iris_model").exit_code == 0
    for path in ("iris_model/v1/iris_model.proto", "protoreg/registry/v1/registry.proto", "buf.yaml"):
        assert (cli.protos / path).read_text() == (ROOT / "proto_versions" / path).read_text(), path


def test_fields_json_shape(cli) -> None:  # type: ignore[no-untyped-def]
    cli("register", "iris_model")
    result = cli("fields", "iris_model", "--format", "json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert (data["model"], data["version"]) == ("iris_model", "1.0.0")
    request = next(m for m in data["messages"] if m["name"] == "PredictRequest")
    assert request["fields"][0] == {"name": "sepal_length", "number": 1, "type": "double",
                                    "label": "optional", "required": True,
                                    "contract": {"ge": 0.0, "le": 50.0}}
    assert request["reserved_numbers"] == [] and request["reserved_names"] == []
    species = next(e for e in data["enums"] if e["name"] == "Species")
    assert species["values"][0] == {"name": "SPECIES_UNSPECIFIED", "number": 0}


def test_fields_text_and_unknown_version(cli) -> None:  # type: ignore[no-untyped-def]
    cli("register", "iris_model")
    text = cli("fields", "iris_model")
    assert "1  sepal_length: optional double" in text.output
    missing = cli("fields", "iris_model", "--version", "9.9.9")
    assert missing.exit_code == 1
    assert 'has no release "9.9.9"' in missing.output
    assert "Traceback" not in missing.output


def test_history_lists_releases_with_changes(cli) -> None:  # type: ignore[no-untyped-def]
    cli("register", "iris_model")
    result = cli("history", "iris_model")
    assert result.exit_code == 0
    assert re.search(r"^1\.0\.0  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC  iris_model\.v1$", result.output, re.M)
    assert "added Species.SPECIES_SETOSA = 1" in result.output


def test_render_check_names_stale_files(cli) -> None:  # type: ignore[no-untyped-def]
    cli("register", "iris_model")
    assert cli("render", "--check").exit_code == 0
    target = cli.protos / "iris_model" / "v1" / "iris_model.proto"
    target.write_text(target.read_text() + "// edited by hand\n")
    stale = cli("render", "--check")
    assert stale.exit_code == 1
    assert f"stale: {target}" in stale.output
    assert cli("render").exit_code == 0
    assert cli("render", "--check").exit_code == 0


def test_render_release_needs_out_and_writes_there(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli("register", "iris_model")
    assert cli("render", "--release", "iris_model==1.0.0").exit_code == 2
    assert cli("render", "--release", "iris_model").exit_code == 2
    out = tmp_path / "pinned"
    result = cli("render", "--release", "iris_model==1.0.0", "--out", str(out))
    assert result.exit_code == 0
    assert (out / "iris_model" / "v1" / "iris_model.proto").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("register",), "name at least one MODEL_REF"),
        (("register", "no_such_model"), 'No model named "no_such_model"'),
        (("register", "no.such.module:Model"), 'Cannot import module "no.such.module"'),
        (("register", "protoreg.cli:main"), "is not a model"),
    ],
)
def test_user_errors_are_one_sentence_without_traceback(cli, args, message) -> None:  # type: ignore[no-untyped-def]
    result = cli(*args)
    assert result.exit_code in (1, 2)
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0


def all_commands(group: click.Group) -> dict[str, click.Command]:
    return dict(group.commands)


def test_help_documents_every_command_and_option() -> None:
    top = run("--help")
    assert top.exit_code == 0
    for name, command in all_commands(main).items():
        assert name in top.output
        assert command.help, f"command {name} has no help text"
        text = run(name, "--help").output
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"option {param.opts} of {name} has no help"
                assert param.opts[0] in text


def test_readme_documents_every_command_and_option() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "--db URL" in readme and "--protos DIR" in readme
    for name, command in all_commands(main).items():
        assert f"protoreg {name}" in readme, f"README does not document `protoreg {name}`"
        for param in command.params:
            if isinstance(param, click.Option) and param.opts[0] not in ("--help",):
                assert param.opts[0] in readme, f"README does not mention {param.opts[0]} of {name}"


def test_readme_command_table_is_generated_from_the_commands() -> None:
    from protoreg.readme import command_table, with_table

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert with_table(readme, command_table()) == readme, (
        "README's command table is stale; run `make readme` (python -m protoreg.readme)"
    )
    for name in main.commands:
        assert f"| `protoreg {name}" in readme
