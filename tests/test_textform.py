"""The registry as text: the text form, ``--db DIR``, and ``export``/``import`` between SQLite,
PostgreSQL and the text form (all or nothing, conflicts refused), byte-identical round trips."""

from __future__ import annotations

from dataclasses import replace

import pytest
from click.testing import CliRunner

from protoreg.cli import main
from protoreg.registry.database import open_registry
from protoreg.registry.records import ModelRecord
from protoreg.registry.store import Base
from protoreg.registry.textform import TextFormError, format_model, parse_model
from protoreg.registry.textstore import MARKER, TextRegistry
from tests.project_support import Project

SHOP_EXTRA = '''

class Colour(str, Enum):
    red = "red"
    blue = "blue"
'''


def _history(p: Project, db: str) -> None:
    """Four releases of shop_model with an added, a removed, a renamed field and an enum."""
    steps = [
        ("1.0.0", {}),
        ("1.1.0", {"inputs": 'age: int\n    name: str\n    nickname: str = ""'}),
        ("2.0.0", {"inputs": 'age: int\n    name: str\n    alias: str = Field("", json_schema_extra={"protoreg": '
                             '{"renamed_from": "nickname"}})', "outputs": "score: float"}),
        ("2.1.0", {"inputs": 'age: int\n    name: str\n    alias: str = Field("", json_schema_extra={"protoreg": '
                             '{"renamed_from": "nickname"}})\n    colour: Colour = Colour.red\n'
                             '    mood: Literal["calm", "busy"] = "calm"', "outputs": "score: float",
                   "extra": SHOP_EXTRA}),
    ]
    for version, parts in steps:
        source = dict(parts)
        p.model(version, **source)
        text = (p.root / "shop/models.py").read_text()
        p.write("shop/models.py", "from enum import Enum\nfrom typing import Literal\n" + text)
        result = p.cli("--db", db, "register", "shop.models:ShopModel")
        assert result.exit_code == 0, result.output


def test_text_form_is_deterministic_and_reads_back_to_the_same_record(project: Project) -> None:
    _history(project, "sqlite:///r.db")
    with open_registry("sqlite:///r.db") as registry:
        record = registry.model_record("shop_model")
    text = format_model(record)
    assert format_model(record) == text
    assert parse_model(text, "shop_model.txt") == record
    assert [r.version for r in record.releases] == ["1.0.0", "1.1.0", "2.0.0", "2.1.0"]
    # Reviewable: one line per allocation, with the release that first had it.
    assert ('allocation {"number": 3, "name": "alias", "active": true, "since": "1.1.0", '
            '"type_key": "single:scalar:string", "names": ["nickname", "alias"]}') in text
    assert '  follows "2.0.0"' in text
    assert "proto_text" not in text  # a healthy registry's renderings are the snapshots'


def test_a_rendering_that_differs_from_the_snapshot_is_kept(project: Project) -> None:
    _history(project, "sqlite:///r.db")
    with open_registry("sqlite:///r.db") as registry:
        record = registry.model_record("shop_model")
    damaged = replace(record, releases=(replace(record.releases[0], proto_text="// not what it renders\n"),
                                        *record.releases[1:]))
    text = format_model(damaged)
    assert 'proto_text "// not what it renders\\n"' in text
    assert parse_model(text, "x.txt") == damaged


def test_every_column_is_in_the_text_form_or_derived() -> None:
    """A column added by a migration must be added to records.py (or listed here as derived)."""
    derived = {
        "models": {"id"},
        "releases": {"id", "model_id", "seq", "major", "minor", "patch", "prerelease"},
        "messages": {"id", "model_id"},
        "fields": {"id", "message_id"},
        "enums": {"id", "model_id"},
        "enum_values": {"id", "enum_id"},
        "reservations": {"id", "release_id"},
        "lineages": {"model_id", "release_seq", "format", "lineage_json"},
        "adoptions": {"model_id"},
    }
    carried = {
        "models": {"name", "display_name", "description", "created_at"},
        "releases": {"version", "fingerprint", "schema_json", "snapshot_json", "proto_text", "changes_json",
                     "protoreg_version", "created_at"},
        "messages": {"name"},
        "fields": {"number", "name", "names_json", "type_key", "active", "first_release_id"},
        "enums": {"name"},
        "enum_values": {"number", "name", "active", "first_release_id"},
        "reservations": {"scope_kind", "scope_name", "number_start", "number_end", "name"},
        "lineages": set(),
        "adoptions": {"release_id", "source", "plan_json"},
    }
    for table in Base.metadata.sorted_tables:
        columns = {c.name for c in table.columns}
        assert columns == derived[table.name] | carried[table.name], table.name


@pytest.mark.postgres
def test_sqlite_text_postgres_text_round_trip_is_byte_identical(project: Project, postgres_url: str) -> None:
    _history(project, "sqlite:///r.db")
    assert project.cli("--db", "sqlite:///r.db", "register", "iris_model").exit_code == 0
    first = project.cli("--db", "sqlite:///r.db", "export", "--to", "text1")
    assert first.exit_code == 0, first.output
    assert "2 of 2 models written to text1 (text form)" in first.output
    into_pg = project.cli("--db", postgres_url, "import", "text1")
    assert into_pg.exit_code == 0, into_pg.output
    verified = project.cli("--db", postgres_url, "verify")
    assert verified.exit_code == 0, verified.output
    assert "registry consistent: 2 models, 5 releases checked" in verified.output
    assert project.cli("--db", postgres_url, "export", "--to", "text2").exit_code == 0
    for name in ("iris_model.txt", "shop_model.txt", MARKER):
        assert (project.root / "text1" / name).read_bytes() == (project.root / "text2" / name).read_bytes()
    # ... and on to a second SQLite file, whose rows are the first one's.
    assert project.cli("--db", "sqlite:///back.db", "import", postgres_url).exit_code == 0
    with open_registry("sqlite:///r.db") as a, open_registry("sqlite:///back.db") as b:
        for model in ("iris_model", "shop_model"):
            assert a.model_record(model) == b.model_record(model)
            assert a.releases(model) == b.releases(model)
            assert a.history(model) == b.history(model)
    # Every command answers the same from the text form as from the database it came from.
    for args in (["history", "shop_model"], ["fields", "shop_model", "--format", "json"],
                 ["diff", "shop_model", "1.0.0", "2.1.0", "--format", "json"]):
        from_db = project.cli("--db", postgres_url, *args)
        from_text = project.cli("--db", "text1", *args)
        assert (from_db.exit_code, from_db.output) == (from_text.exit_code, from_text.output), args


def test_import_is_all_or_nothing_and_refuses_another_history(project: Project) -> None:
    _history(project, "sqlite:///r.db")
    assert project.cli("--db", "sqlite:///r.db", "register", "iris_model").exit_code == 0
    assert project.cli("--db", "sqlite:///r.db", "export", "--to", "text").exit_code == 0
    # Another registry where shop_model 1.0.0 has another schema.
    project.model("1.0.0", outputs="score: float")
    assert project.cli("--db", "sqlite:///other.db", "--protos", "other", "register",
                       "shop.models:ShopModel").exit_code == 0
    refused = project.cli("--db", "sqlite:///other.db", "import", "text")
    assert refused.exit_code == 1
    assert refused.output.startswith("Error: Nothing was imported: shop_model 1.0.0 has another schema in "
                                     "sqlite:///other.db than in text (text form)")
    with open_registry("sqlite:///other.db") as other:
        assert other.model_names() == ["shop_model"]  # iris_model, which had no conflict, was not added either
    # A target whose releases are the first of the source's gets the rest; the same again is a no-op.
    assert project.cli("--db", "sqlite:///part.db", "import", "text", "iris_model").exit_code == 0
    with open_registry("sqlite:///r.db") as source, open_registry("sqlite:///part.db") as part:
        record = source.model_record("shop_model")
        with part.transaction() as tx:
            tx.replace_model(replace(record, releases=record.releases[:2], ledger=_ledger_at(record, 2)))
    extended = project.cli("--db", "sqlite:///part.db", "import", "text")
    assert extended.exit_code == 0, extended.output
    assert "shop_model: extended (2.0.0, 2.1.0)" in extended.output
    assert "iris_model: already in sqlite:///part.db, unchanged" in extended.output
    assert project.cli("--db", "sqlite:///part.db", "export", "--to", "-", "shop_model").output == \
        (project.root / "text" / "shop_model.txt").read_text()


def _ledger_at(record: ModelRecord, releases: int) -> tuple:  # type: ignore[type-arg]
    """The ledger with only the allocations of the first ``releases`` releases."""
    versions = {r.version for r in record.releases[:releases]}
    return tuple(replace(s, allocations=tuple(a for a in s.allocations if a.since in versions))
                 for s in record.ledger)


def test_register_keeps_a_text_registry_in_step(project: Project) -> None:
    project.model("1.0.0")
    first = project.cli("--db", "reg", "register", "shop.models:ShopModel")
    assert first.exit_code == 0, first.output
    assert (project.root / "reg" / MARKER).read_text().startswith("# protoreg registry (text form)")
    text = (project.root / "reg" / "shop_model.txt").read_text()
    assert 'release "1.0.0"' in text
    project.model("1.1.0", outputs="score: float\n    label: str\n    extra: int = 0")
    assert project.cli("--db", "reg", "register", "shop.models:ShopModel").exit_code == 0
    grown = (project.root / "reg" / "shop_model.txt").read_text()
    assert grown.startswith(text.split("\nledger\n")[0])  # a release is appended: earlier lines stay
    assert '  follows "1.0.0"' in grown
    # A refused registration leaves the files alone.
    project.model("1.2.0", outputs="score: float")
    assert project.cli("--db", "reg", "register", "shop.models:ShopModel").exit_code == 100
    assert (project.root / "reg" / "shop_model.txt").read_text() == grown
    assert not list((project.root / "reg").glob(".*.tmp"))


def test_two_branches_kept_side_by_side_fail_every_read(project: Project) -> None:
    project.model("1.0.0")
    assert project.cli("--db", "reg", "register", "shop.models:ShopModel").exit_code == 0
    base = (project.root / "reg" / "shop_model.txt").read_text()
    project.model("1.1.0", outputs="score: float\n    label: str\n    a: int = 0")
    assert project.cli("--db", "reg", "register", "shop.models:ShopModel").exit_code == 0
    ours = (project.root / "reg" / "shop_model.txt").read_text()
    (project.root / "reg" / "shop_model.txt").write_text(base)  # the other branch, from the same base
    project.model("1.2.0", outputs="score: float\n    label: str\n    b: int = 0")
    assert project.cli("--db", "reg", "--protos", "theirs", "register", "shop.models:ShopModel").exit_code == 0
    theirs = (project.root / "reg" / "shop_model.txt").read_text()
    # What a merge that keeps both sides' release blocks leaves.
    block = theirs.split('\nrelease "1.2.0"\n')[1].split("\nledger\n")[0]
    merged = ours.replace("\nledger\n", f'\nrelease "1.2.0"\n{block}\nledger\n')
    (project.root / "reg" / "shop_model.txt").write_text(merged)
    for args in (["verify"], ["history", "shop_model"], ["check", "shop.models:ShopModel"]):
        result = project.cli("--db", "reg", *args)
        assert result.exit_code == 1, (args, result.output)
        assert ('has release "1.2.0" following "1.0.0", but the release before it is "1.1.0": two branches '
                "registered releases of shop_model side by side") in result.output


def test_a_text_registry_that_is_not_there_or_not_one_is_refused(project: Project) -> None:
    (project.root / "empty").mkdir()
    (project.root / "foreign").mkdir()
    (project.root / "foreign" / "notes.txt").write_text("hello")
    cases = {
        "missing": 'There is no registry at "missing" (text form): the directory does not exist',
        "empty": 'The text-form registry "empty" is empty',
        "foreign": '"foreign" is not a protoreg text-form registry (it holds no README.md written by protoreg)',
    }
    for db, sentence in cases.items():
        result = project.cli("--db", db, "history", "shop_model")
        assert result.exit_code == 1 and sentence in result.output, result.output
        assert "Traceback" not in result.output
    assert not (project.root / "missing").exists()


def test_a_damaged_file_names_its_line(project: Project) -> None:
    project.model("1.0.0")
    assert project.cli("--db", "reg", "register", "shop.models:ShopModel").exit_code == 0
    path = project.root / "reg" / "shop_model.txt"
    lines = path.read_text().splitlines()
    number = next(i for i, line in enumerate(lines, 1) if line.startswith("  fingerprint"))
    lines[number - 1] = "  fingerprint 12"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TextFormError, match=rf"shop_model.txt:{number} has \"fingerprint\" 12"):
        TextRegistry(project.root / "reg", write=False).releases("shop_model")


def test_export_to_stdout_is_the_file(project: Project) -> None:
    project.model("1.0.0")
    assert project.cli("--db", "reg", "register", "shop.models:ShopModel").exit_code == 0
    result = CliRunner().invoke(main, ["--db", "reg", "export", "--to", "-", "shop_model"])
    assert result.exit_code == 0
    assert result.output == (project.root / "reg" / "shop_model.txt").read_text()
