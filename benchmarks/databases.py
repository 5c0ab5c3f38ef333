"""Throw-away registries for one benchmark: a SQLite file in a temp dir, or a PostgreSQL schema."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text

POSTGRES_ENV = "PROTOREG_BENCH_POSTGRES_URL"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_base_url() -> str | None:
    """The PostgreSQL server to use, or None when there is none (the rows are then skipped)."""
    url = os.environ.get(POSTGRES_ENV) or os.environ.get("PROTOREG_TEST_POSTGRES_URL") or DEFAULT_POSTGRES
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception:
        return None
    return url


@contextmanager
def sqlite_registry() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="protoreg-bench-") as tmp:
        yield f"sqlite:///{tmp}/registry.db"


@contextmanager
def postgres_registry(base: str) -> Iterator[str]:
    """A fresh schema on ``base``, dropped afterwards."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
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
