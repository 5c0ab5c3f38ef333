"""Shared fixtures: real registries (a SQLite file, and PostgreSQL when the machine has it)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import create_engine, text

POSTGRES_ENV = "PROTOREG_TEST_POSTGRES_URL"


def postgres_base_url() -> str | None:
    return os.environ.get(POSTGRES_ENV) or None


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    """A fresh SQLite registry file for one test."""
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for one test; skipped without PROTOREG_TEST_POSTGRES_URL."""
    base = postgres_base_url()
    if base is None:
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV} (set by .ci/run)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def registry_url(request: pytest.FixtureRequest) -> str:
    """A fresh registry URL, once on SQLite and once on PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return request.getfixturevalue(name)


def make_model(
    name: str,
    version: str,
    input_schema: type[BaseModel],
    output_schema: type[BaseModel],
    predict: Any = None,
) -> type:
    """A model class with the MLModel attributes, built at run time for tests."""

    def _predict(self: Any, data: BaseModel) -> BaseModel:
        if predict is not None:
            return predict(data)
        return output_schema.model_construct()

    return type(
        f"{name.title().replace('_', '')}Model",
        (),
        {
            "qualified_name": name,
            "display_name": name.replace("_", " ").title(),
            "description": f"Test model {name}.",
            "version": version,
            "input_schema": input_schema,
            "output_schema": output_schema,
            "predict": _predict,
        },
    )


from tests.project_support import project  # noqa: E402,F401  (the fixture: a model project on disk)
