"""Alembic owns the schema: every past revision upgrades to head with its data, the models and
the migrations do not drift, and a database from a newer protoreg is refused untouched."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, create_engine, inspect, text

from protoreg.registry.database import open_registry
from protoreg.registry.errors import DatabaseVersionError
from protoreg.registry.registration import register_release
from protoreg.registry.schema import extract_schema
from protoreg.registry.store import Base
from protoreg.registry.upgrade import alembic_config, head_from_files, schema_head
from protoreg.registry.verify import verify_registry

DATA = Path(__file__).parent / "migration_data"
TABLES = ("models", "releases", "messages", "enums", "fields", "enum_values", "reservations")


def revisions() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def test_the_quick_head_read_from_the_files_is_alembics_head() -> None:
    # open_registry skips importing Alembic when the database is at this revision.
    assert head_from_files() == schema_head()


def test_every_revision_has_a_data_fixture() -> None:
    missing = [rev for rev in revisions() if not (DATA / f"{rev}.json").exists()]
    assert not missing, f"add tests/migration_data/<rev>.json for {missing}"


@pytest.mark.parametrize("revision", revisions())
def test_registry_at_past_revision_upgrades_to_head_with_its_data(registry_url: str, revision: str) -> None:
    engine = create_engine(registry_url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)
        tables = json.loads((DATA / f"{revision}.json").read_text())["tables"]
        metadata = MetaData()
        metadata.reflect(conn)  # the tables as they were at that revision
        for name, rows in tables.items():
            for row in rows:
                if "created_at" in row:
                    row["created_at"] = datetime.fromisoformat(row["created_at"]).replace(tzinfo=UTC)
            if rows:
                conn.execute(metadata.tables[name].insert(), rows)
        if conn.dialect.name == "postgresql":
            for table in TABLES:
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"COALESCE((SELECT max(id) FROM {table}), 0) + 1, false)"))
    engine.dispose()
    with open_registry(registry_url) as registry:  # upgrades on open
        assert registry.model_names() == ["iris_model"]
        report = verify_registry(registry)
        assert report.ok, [p.describe() for p in report.problems]
        from iris_model import IrisModel

        again = register_release(registry, extract_schema(IrisModel))
        assert again.status == "unchanged"
    engine = create_engine(registry_url)
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == schema_head()
    engine.dispose()


def test_models_and_migrations_do_not_drift(registry_url: str) -> None:
    open_registry(registry_url).close()
    engine = create_engine(registry_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == [], f"run alembic revision --autogenerate; the models changed: {diff}"
        assert set(TABLES) <= set(inspect(conn).get_table_names())
    engine.dispose()


def test_newer_revision_is_refused_untouched(registry_url: str) -> None:
    open_registry(registry_url).close()
    engine = create_engine(registry_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
        before = conn.execute(text("SELECT count(*) FROM models")).scalar()
    with pytest.raises(DatabaseVersionError, match="written by a newer protoreg"):
        open_registry(registry_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "9999_future"
        assert conn.execute(text("SELECT count(*) FROM models")).scalar() == before
    engine.dispose()
