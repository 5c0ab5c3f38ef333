"""Issue 10, items 10 to 18: the registry, rendering and CLI defects found by probing, each with the
probe that found it. Real SQLite files, real PostgreSQL (when the machine has it), real protoc,
real processes; a read-only file system is a directory an unprivileged process cannot write, and a
full disk is the kernel's ``/dev/full``."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from protoreg.registry import ir
from protoreg.registry.database import open_registry
from protoreg.registry.errors import EXIT_RECORDED_NOT_RENDERED, SchemaError, explain
from protoreg.registry.naming import read_release_header
from protoreg.registry.protoc import compile_descriptor_set
from protoreg.registry.registration import RenderingRefusedError, _write, register_release
from protoreg.registry.render import render_package
from protoreg.registry.retry import is_transient, retry
from protoreg.registry.schema import MessageSpec, ModelSchema, extract_schema
from protoreg.registry.verify import verify_registry
from protoreg.registry.versioning import parse_version
from tests.conftest import make_model
from tests.project_support import Project

REF = "shop.models:ShopModel"


def one_sentence(output: str) -> str:
    """The error line; fails when the output holds a traceback."""
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, output
    return errors[0]


# -- 10. register commits schemas that protoc refuses ----------------------------------------------


def test_a_class_named_like_the_service_is_refused_naming_both(project: Project) -> None:
    project.model("1.0.0", inputs="age: int\n    extra: ShopModelService",
                  extra="class ShopModelService(BaseModel):\n    x: int\n")
    result = project.cli("--db", "sqlite:///r.db", "register", REF)
    assert result.exit_code == 1, result.output
    line = one_sentence(result.output)
    assert 'class "ShopModelService" has the name of the generated service "ShopModelService"' in line, line
    assert not (project.root / "r.db").exists() and not (project.root / "proto_versions").exists()


def test_enum_values_colliding_in_the_package_scope_are_refused_naming_both(project: Project) -> None:
    enums = ("import enum\n\nclass Color(str, enum.Enum):\n    red_x = 'red_x'\n\n"
             "class ColorRed(str, enum.Enum):\n    x = 'x'\n")
    project.model("1.0.0", inputs="a: Color\n    b: ColorRed", extra=enums)
    result = project.cli("--db", "sqlite:///r.db", "register", REF)
    assert result.exit_code == 1, result.output
    line = one_sentence(result.output)
    assert ('value "x" of enum "ColorRed" and value "red_x" of enum "Color" both become "COLOR_RED_X"'
            in line), line
    assert not (project.root / "r.db").exists()


def test_two_enums_with_the_same_unspecified_value_are_refused(project: Project) -> None:
    enums = ("import enum\n\nclass Shade(str, enum.Enum):\n    dark_unspecified = 'dark_unspecified'\n\n"
             "class ShadeDark(str, enum.Enum):\n    light = 'light'\n")
    project.model("1.0.0", inputs="a: Shade\n    b: ShadeDark", extra=enums)
    result = project.cli("--db", "sqlite:///r.db", "register", REF)
    assert result.exit_code == 1, result.output
    line = one_sentence(result.output)
    assert 'its zero value of enum "ShadeDark" and value "dark_unspecified" of enum "Shade" both become ' \
           '"SHADE_DARK_UNSPECIFIED"' in line, line


def test_a_display_name_cannot_forge_a_header_line(project: Project) -> None:
    project.model("1.0.0")
    models = project.root / "shop" / "models.py"
    project.write("shop/models.py", models.read_text().replace(
        'display_name = "Shop"', 'display_name = "Shop\\n// Release: evil_model==9.9.9"'))
    result = project.cli("--db", "sqlite:///r.db", "register", REF)
    assert result.exit_code == 1, result.output
    assert "has a line break" in one_sentence(result.output)
    # And the template prints any display name on one line, whatever reached the snapshot.
    Out = make_model("x", "1.0.0", *_io()).output_schema  # noqa: N806
    package = _numbered_package("forged_model", display_name="Forged\n// Release: evil_model==9.9.9", output=Out)
    rendered = render_package(package)
    assert read_release_header(rendered) == ("forged_model", "1.0.0")
    assert not any(line.startswith("// Release: evil") for line in rendered.splitlines()), rendered


def _io() -> tuple[type, type]:
    from pydantic import BaseModel

    class In(BaseModel):
        x: float

    class Out(BaseModel):
        y: float

    return In, Out


def _numbered_package(model: str, display_name: str = "", output: type | None = None) -> ir.Package:
    from protoreg.registry.numbering import History, allocate_numbers

    inputs, outputs = _io()
    schema = extract_schema(make_model(model, "1.0.0", inputs, output or outputs))
    schema = ModelSchema(schema.model, display_name, schema.description, schema.version, schema.messages,
                         schema.enums)
    return allocate_numbers(History(), schema).package


def _with_service_class(schema: ModelSchema) -> ModelSchema:
    """What extraction now refuses, built by hand: a message named like the service."""
    clash = MessageSpec(f"{''.join(p.title() for p in schema.model.split('_'))}Service", ())
    return ModelSchema(schema.model, schema.display_name, schema.description, schema.version,
                       (*schema.messages, clash), schema.enums)


def test_registration_compiles_its_rendering_and_rolls_back_when_protoc_refuses(registry_url: str) -> None:
    schema = _with_service_class(extract_schema(make_model("clash_model", "1.0.0", *_io())))
    with open_registry(registry_url) as registry:
        with pytest.raises(RenderingRefusedError, match=r"clash_model 1\.0\.0: protoc refuses its rendering .*"
                                                        r"ClashModelService.*nothing was registered"):
            register_release(registry, schema)
        assert registry.versions("clash_model") is None  # the model row was rolled back too
        assert verify_registry(registry).ok


def test_verify_reports_a_served_release_protoc_refuses_and_a_fixed_release_repairs_it(sqlite_url: str) -> None:
    good = extract_schema(make_model("clash_model", "1.0.0", *_io()))
    broken = _with_service_class(good)
    with open_registry(sqlite_url) as registry:
        # As registration wrote it before it compiled renderings: the broken release is committed.
        from protoreg.registry.lineage import Lineage
        from protoreg.registry.numbering import History, allocate_numbers

        with registry.transaction() as tx:
            model_id = tx.lock_model(broken.model, "", "", create=True)
            assert model_id is not None
            numbered = allocate_numbers(History(), broken)
            _write(tx, model_id, broken, parse_version("1.0.0"), numbered, Lineage(),
                   proto_text=render_package(numbered.package))
        report = verify_registry(registry)
        assert [p.check for p in report.problems] == ["PROTOC_REFUSED"], report.problems
        assert report.problems[0].version == "1.0.0" and "ClashModelService" in report.problems[0].message
        # The documented repair: register a fixed release of the same major line.
        fixed = ModelSchema(good.model, good.display_name, good.description, "1.1.0", good.messages, good.enums)
        register_release(registry, fixed)
        assert verify_registry(registry).ok, verify_registry(registry).problems


# -- 11. names that cannot become files, packages or database values -------------------------------


def test_a_300_character_model_name_is_refused_before_anything_is_written(project: Project) -> None:
    project.model("1.0.0")
    models = project.root / "shop" / "models.py"
    long_name = "shop_" + "x" * 295
    project.write("shop/models.py", models.read_text().replace('"shop_model"', f'"{long_name}"'))
    result = project.cli("--db", "sqlite:///r.db", "register", REF)
    assert result.exit_code == 1, result.output
    assert "has 300 characters, more than the 100 protoreg allows" in one_sentence(result.output)
    assert not (project.root / "r.db").exists()


def test_the_longest_names_allowed_register_and_render_on_every_backend(registry_url: str, tmp_path: Path) -> None:
    from pydantic import BaseModel, create_model

    field = "f" * 100
    In = create_model("L" * 100, **{field: (float, ...)})  # type: ignore[call-overload]  # noqa: N806

    class Wrap(BaseModel):
        inner: In  # type: ignore[valid-type]

    model = "m" * 100
    schema = extract_schema(make_model(model, "1.0.0", Wrap, _io()[1]))
    with open_registry(registry_url) as registry:
        assert register_release(registry, schema).status == "created"
        from protoreg.registry.render import render_tree, write_tree

        write_tree(tmp_path / "protos", render_tree(registry.served_packages()))
    assert f"{model}/v1/{model}.proto" in {f.name for f in compile_descriptor_set(tmp_path / "protos").file}
    with pytest.raises(SchemaError, match='field name "f{40}...f{10}" has 101 characters'):
        extract_schema(make_model(model, "1.0.0", create_model("Long", **{"f" * 101: (float, ...)}), _io()[1]))
    with pytest.raises(SchemaError, match="has 5001 characters"):
        extract_schema(make_model(model, "1.0.0", create_model("Long", **{"f" * 5001: (float, ...)}), _io()[1]))


# -- 12. render --check and files the registry never wrote -------------------------------------------


def test_render_check_fails_on_extra_files_and_leftovers_and_render_removes_its_leftovers(cli_project) -> None:  # type: ignore[no-untyped-def]
    project, protos = cli_project
    assert project.cli("--db", "sqlite:///r.db", "render", "--check").exit_code == 0
    faulty = protos / "faulty" / "v1" / "faulty.proto"
    faulty.parent.mkdir(parents=True)
    shutil.copy(protos / "shop_model" / "v1" / "shop_model.proto", faulty)
    result = project.cli("--db", "sqlite:///r.db", "render", "--check")
    assert result.exit_code == 1, result.output
    assert f"extra: {Path('proto_versions/faulty/v1/faulty.proto')}" in result.output
    faulty.unlink()
    leftover = protos / "shop_model" / "v1" / ".shop_model.proto.999999999.tmp"  # past any pid_max
    leftover.write_text("half a file")
    result = project.cli("--db", "sqlite:///r.db", "render", "--check")
    assert result.exit_code == 1 and "leftover: " in result.output, result.output
    result = project.cli("--db", "sqlite:///r.db", "render")
    assert result.exit_code == 0 and "removed " in result.output, result.output
    assert not leftover.exists()
    assert project.cli("--db", "sqlite:///r.db", "render", "--check").exit_code == 0


@pytest.fixture
def cli_project(project: Project) -> tuple[Project, Path]:
    project.model("1.0.0")
    result = project.cli("--db", "sqlite:///r.db", "register", REF)
    assert result.exit_code == 0, result.output
    return project, project.root / "proto_versions"


# -- 13. register after commit, when proto_versions/ cannot be written ------------------------------


def test_a_full_disk_after_commit_is_exit_3_and_render_repairs_the_tree(cli_project) -> None:  # type: ignore[no-untyped-def]
    project, protos = cli_project
    project.model("1.1.0", outputs="score: float\n    label: str\n    extra: float = 0.0")
    # The file register writes before renaming it into place is the kernel's full device.
    tmp = protos / "shop_model" / "v1" / f".shop_model.proto.{os.getpid()}.tmp"
    tmp.symlink_to("/dev/full")
    result = project.cli("--db", "sqlite:///r.db", "register", REF)
    assert result.exit_code == EXIT_RECORDED_NOT_RENDERED == 3, result.output
    line = one_sentence(result.output)
    assert line.startswith("Error: shop_model 1.1.0 is recorded in the registry, but writing proto_versions "
                           "failed: No space left on device"), line
    assert "run `protoreg render` to repair proto_versions" in line
    assert not tmp.exists() and not tmp.is_symlink()  # the failed write removed its own file
    assert "1.1.0" in project.cli("--db", "sqlite:///r.db", "history", "shop_model").output
    assert project.cli("--db", "sqlite:///r.db", "render", "--check").exit_code == 1
    assert project.cli("--db", "sqlite:///r.db", "render").exit_code == 0
    assert project.cli("--db", "sqlite:///r.db", "render", "--check").exit_code == 0


# -- 14. build metadata ------------------------------------------------------------------------------


def test_build_metadata_is_refused_in_one_sentence(project: Project) -> None:
    project.model("1.0.0+build.1")
    for command in ("register", "check"):
        result = project.cli("--db", "sqlite:///r.db", command, REF)
        assert result.exit_code == 1, result.output
        assert 'version "1.0.0+build.1" has build metadata ("+build.1")' in one_sentence(result.output)
    assert not (project.root / "r.db").exists()


# -- 15. damaged SQLite files --------------------------------------------------------------------------


def test_verify_reports_damaged_pages_and_never_crashes(cli_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    project, _ = cli_project
    for version in ("1.1.0", "1.2.0"):
        project.model(version, outputs="score: float\n    label: str\n    extra: float = 0.0")
        assert project.cli("--db", "sqlite:///r.db", "register", REF).exit_code == 0
    pristine = project.root / "r.db"
    with sqlite3.connect(pristine) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    pages = pristine.stat().st_size // page_size
    assert pages > 5
    damaged_and_caught = 0
    for page in range(1, pages):
        for offset in (8, 100, page_size // 2, page_size - 16):
            copy = project.root / f"damaged-{page}-{offset}.db"
            data = bytearray(pristine.read_bytes())
            data[page * page_size + offset: page * page_size + offset + 8] = b"\xa5" * 8
            copy.write_bytes(bytes(data))
            result = project.cli("--db", f"sqlite:///{copy.name}", "verify")
            assert result.exception is None or isinstance(result.exception, SystemExit), (page, offset, result.output)
            assert "Traceback" not in result.output
            with sqlite3.connect(copy) as check:
                try:
                    healthy = check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                except (sqlite3.DatabaseError, UnicodeDecodeError):
                    healthy = False
            if not healthy:
                assert result.exit_code == 1, (page, offset, result.output)
                damaged_and_caught += 1
            copy.unlink()
    assert damaged_and_caught > 0


def test_verify_turns_an_undecodable_row_into_a_problem(cli_project) -> None:  # type: ignore[no-untyped-def]
    project, _ = cli_project
    with sqlite3.connect(project.root / "r.db") as connection:
        connection.execute("UPDATE releases SET snapshot_json = '{not json'")
    result = project.cli("--db", "sqlite:///r.db", "verify")
    assert result.exit_code == 1 and result.exception is None or isinstance(result.exception, SystemExit)
    assert "UNREADABLE: shop_model: cannot be read (JSONDecodeError" in result.output, result.output


# -- 16. commands that only read never write -----------------------------------------------------------


def test_a_registry_behind_the_schema_is_named_with_the_upgrade_command_and_left_alone(
    project: Project, registry_url: str
) -> None:
    from alembic import command

    from protoreg.registry.database import describe_url
    from protoreg.registry.upgrade import alembic_config, stored_revision

    engine = create_engine(registry_url)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0001")
    db = project.root / "registry.db"
    url = f"sqlite:///{db}" if registry_url.startswith("sqlite") else registry_url
    if url != registry_url:  # the SQLite fixture's file lives elsewhere: use one in the project
        shutil.copy(registry_url.removeprefix("sqlite:///"), db)
    before = db.read_bytes() if db.exists() else None
    for args in (["verify"], ["history", "shop_model"], ["render", "--check"]):
        result = project.cli("--db", url, *args)
        assert result.exit_code == 1, result.output
        line = one_sentence(result.output)
        assert "was written by an older protoreg (schema revision 0001" in line, line
        assert f"run `protoreg --db {describe_url(url)} upgrade` first" in line, line
        assert stored_revision(create_engine(url)) == "0001", args
        if before is not None:
            assert db.read_bytes() == before, args
    engine.dispose()
    result = project.cli("--db", url, "upgrade")
    assert result.exit_code == 0 and "upgraded from schema revision 0001 to" in result.output, result.output
    assert project.cli("--db", url, "verify").exit_code == 0
    assert "already at schema revision" in project.cli("--db", url, "upgrade").output


def test_register_refuses_another_applications_sqlite_file_untouched(project: Project) -> None:
    other = project.root / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE customers (name TEXT)")
    before = other.read_bytes()
    project.model("1.0.0")
    for args in (["register", REF], ["upgrade"], ["verify"]):
        result = project.cli("--db", "sqlite:///other.db", *args)
        assert result.exit_code == 1, result.output
        assert "is not a protoreg registry (it holds other tables (customers)) and was not changed" in \
            one_sentence(result.output)
        assert other.read_bytes() == before
    with sqlite3.connect(other) as connection:
        tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"customers"}


def test_reads_leave_the_database_file_byte_for_byte_alone(cli_project) -> None:  # type: ignore[no-untyped-def]
    project, _ = cli_project
    db = project.root / "r.db"
    connection = sqlite3.connect(db)
    connection.execute("PRAGMA journal_mode=DELETE")  # as a restored backup may be: no read may switch it
    connection.close()
    before = db.read_bytes()
    for args in (["verify"], ["history", "shop_model"], ["fields", "shop_model"], ["render", "--check"],
                 ["check", REF]):
        assert project.cli("--db", "sqlite:///r.db", *args).exit_code == 0, args
    assert db.read_bytes() == before
    assert not (project.root / "r.db-wal").exists()


@pytest.mark.postgres
def test_postgres_reads_run_in_read_only_transactions(postgres_url: str) -> None:
    schema = extract_schema(make_model("ro_model", "1.0.0", *_io()))
    with open_registry(postgres_url) as registry:
        register_release(registry, schema)
    with open_registry(postgres_url, create=False) as reader:
        assert reader.versions("ro_model") == ("1.0.0",)
        with pytest.raises(DBAPIError, match="read-only transaction"):
            register_release(reader, ModelSchema("other_model", "", "", "1.0.0", schema.messages, schema.enums))


# -- 17. read-only media -------------------------------------------------------------------------------


@contextmanager
def read_only(*paths: Path) -> Iterator[None]:
    """Make ``paths`` unwritable for this process: by permissions, or for root (whom permissions do
    not stop) with the immutable attribute, which refuses even root as read-only media does."""
    if os.geteuid() == 0:
        chattr = shutil.which("chattr")
        done = chattr is not None and subprocess.run([chattr, "+i", *map(str, paths)],
                                                     capture_output=True, check=False).returncode == 0
        if not done:
            pytest.skip("running as root on a file system without chattr +i: cannot make a read-only directory")
        try:
            yield
        finally:
            subprocess.run([str(chattr), "-i", *map(str, paths)], check=True)
        return
    modes = {p: p.stat().st_mode for p in paths}
    for path in paths:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        yield
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


@pytest.fixture
def media(cli_project, monkeypatch: pytest.MonkeyPatch) -> Path:  # type: ignore[no-untyped-def]
    """A copy of the project (registry in WAL mode, protos, a new minor release of the model), as the
    current directory."""
    project, protos = cli_project
    root = project.root.parent / "media"
    root.mkdir()
    shutil.copy(project.root / "r.db", root / "r.db")
    shutil.copytree(protos, root / "proto_versions")
    shutil.copytree(project.root / "shop", root / "shop")
    (root / "shop" / "models.py").write_text(  # a new minor release: register has something to write
        (root / "shop" / "models.py").read_text().replace('version = "1.0.0"', 'version = "1.1.0"').replace(
            "label: str", "label: str\n    extra: float = 0.0", 1))
    connection = sqlite3.connect(root / "r.db")
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()  # the last connection: SQLite removes -wal and -shm
    monkeypatch.chdir(root)
    for name in [n for n in sys.modules if n == "shop" or n.startswith("shop.")]:
        del sys.modules[name]
    return root


def test_read_commands_work_on_read_only_media(project: Project, media: Path) -> None:
    with read_only(media, media / "r.db"):
        assert not (media / "r.db-shm").exists()
        probe = project.cli("--db", "sqlite:///r.db", "register", REF)
        assert probe.exit_code == 1, probe.output  # the directory really cannot be written
        one_sentence(probe.output)
        for args in (["verify"], ["history", "shop_model"], ["check", REF], ["render", "--check"],
                     ["fields", "shop_model"]):
            result = project.cli("--db", "sqlite:///r.db", *args)
            assert result.exit_code == 0, (args, result.output)
    assert sorted(p.name for p in media.iterdir()) == ["proto_versions", "r.db", "shop"]


def test_read_only_media_with_an_unchecked_write_ahead_log_is_refused_not_misread(
    project: Project, media: Path
) -> None:
    # A copy taken while a writer held releases in the log: reading the main file alone would
    # silently miss them, so the read is refused with the way out.
    writer = sqlite3.connect(project.root / "r.db")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("UPDATE models SET display_name = 'only in the log'")
    writer.commit()
    shutil.copy(project.root / "r.db", media / "r.db")
    shutil.copy(project.root / "r.db-wal", media / "r.db-wal")
    writer.close()
    with read_only(media, media / "r.db", media / "r.db-wal"):
        result = project.cli("--db", "sqlite:///r.db", "history", "shop_model")
    assert result.exit_code == 1, result.output
    assert "has a write-ahead log (\"r.db-wal\") that was never checkpointed" in one_sentence(result.output)


def test_a_read_only_database_file_on_register_is_one_sentence(project: Project, media: Path) -> None:
    with read_only(media / "r.db"):
        result = project.cli("--db", "sqlite:///r.db", "register", REF)
    assert result.exit_code == 1, result.output
    line = one_sentence(result.output)
    assert line.startswith("Error: The registry database failed: attempt to write a readonly database;"), line
    assert "INSERT" not in line and "make the database file and its directory writable" in line, line


@pytest.mark.parametrize("body, expected", [
    ("raise RuntimeError('no weights file')", "RuntimeError: no weights file ("),
    ("def broken(:\n    pass", "SyntaxError: "),
])
def test_a_model_module_that_fails_to_import_is_one_sentence(project: Project, body: str, expected: str) -> None:
    project.write("shop/__init__.py", "")
    project.write("shop/models.py", body + "\n")
    for command in ("register", "check"):
        result = project.cli("--db", "sqlite:///r.db", command, REF)
        assert result.exit_code == 1, result.output
        line = one_sentence(result.output)
        assert line.startswith(f'Error: Importing module "shop.models" for model "{REF}" failed: {expected}'), line


def test_renamed_from_that_is_not_a_name_is_one_sentence(project: Project) -> None:
    project.model("1.0.0", inputs='age: int = Field(json_schema_extra={"protoreg": {"renamed_from": 5}})')
    result = project.cli("--db", "sqlite:///r.db", "register", REF)
    assert result.exit_code == 1, result.output
    assert "renamed_from must be a field name or a list of field names, not 5" in one_sentence(result.output)


def test_integrity_errors_are_never_retried(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        connection.execute(text("INSERT INTO t VALUES (1)"))
    attempts = []

    def duplicate() -> None:
        attempts.append(1)
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (1)"))

    with pytest.raises(IntegrityError):
        retry(duplicate)
    assert len(attempts) == 1
    engine.dispose()


def test_a_locked_sqlite_database_is_transient_by_its_error_code(sqlite_url: str) -> None:
    holder = create_engine(sqlite_url, connect_args={"isolation_level": None})
    waiter = create_engine(sqlite_url, connect_args={"timeout": 0, "isolation_level": None})
    with holder.connect() as held:
        held.exec_driver_sql("BEGIN IMMEDIATE")
        with waiter.connect() as waiting, pytest.raises(DBAPIError) as caught:
            waiting.exec_driver_sql("BEGIN IMMEDIATE")
        held.exec_driver_sql("ROLLBACK")
    assert is_transient(caught.value)
    holder.dispose()
    waiter.dispose()


@pytest.mark.postgres
def test_a_postgres_data_error_is_one_sentence_without_the_statement(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    with pytest.raises(DBAPIError) as caught, engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (name VARCHAR(5))"))
        connection.execute(text("INSERT INTO t VALUES (:v)"), {"v": "secret-and-too-long"})
    engine.dispose()
    assert not is_transient(caught.value)
    sentence = str(explain(caught.value))
    assert "value too long" in sentence and "SQLSTATE 22001" in sentence, sentence
    assert "INSERT" not in sentence and "secret" not in sentence, sentence


@pytest.mark.postgres
def test_a_backend_terminated_mid_registration_is_retried(postgres_url: str) -> None:
    application = f"protoreg-test-{uuid.uuid4().hex[:8]}"
    url = f"{postgres_url}&application_name={application}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    terminated = []

    def gate(*_args: object) -> None:
        if terminated:
            return
        with admin.connect() as connection:
            killed = connection.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = :app AND state = 'idle in transaction'"), {"app": application}).scalar()
        terminated.append(killed)

    schema = extract_schema(make_model("killed_model", "1.0.0", *_io()))
    with open_registry(url) as registry:
        result = register_release(registry, schema, gate=gate)
        assert terminated == [1] and result.status == "created"
        assert registry.versions("killed_model") == ("1.0.0",)
        assert verify_registry(registry).ok
    admin.dispose()




def test_a_full_database_is_one_sentence_that_says_to_free_space(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    with pytest.raises(DBAPIError) as caught, engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (blob TEXT)")
        page_count = connection.exec_driver_sql("PRAGMA page_count").scalar()
        connection.exec_driver_sql(f"PRAGMA max_page_count = {page_count}")  # SQLite's own "disk is full"
        connection.execute(text("INSERT INTO t VALUES (:v)"), {"v": "private " * 10_000})
    engine.dispose()
    assert not is_transient(caught.value)
    sentence = str(explain(caught.value))
    assert sentence.startswith("The registry database failed: database or disk is full;"), sentence
    assert "free some disk space" in sentence and "private" not in sentence and "INSERT" not in sentence
