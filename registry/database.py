"""Opening a registry database: its URL, the SQLAlchemy engine and its SQLite settings.

:func:`open_registry` is the one way in: it resolves the URL (``--db``, ``$PROTOREG_DB``, or
``sqlite:///protoreg.db``), creates the engine, brings the schema up to date
(:mod:`protoreg.registry.upgrade`, retried like any transaction) and hands back a
:class:`~protoreg.registry.store.Registry`. SQLite runs in WAL mode with a busy timeout and foreign keys
on, and every transaction takes the write lock at ``BEGIN`` so two writers never read the same
history.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from .errors import DatabaseError
from .retry import retry
from .store import Registry
from .upgrade import ensure_schema

DEFAULT_URL = "sqlite:///protoreg.db"
ENV_URL = "PROTOREG_DB"


def resolve_url(url: str | None) -> str:
    return url or os.environ.get(ENV_URL) or DEFAULT_URL


def describe_url(url: str) -> str:
    """The URL as it may appear in a message: never with its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def first_line(error: BaseException) -> str:
    """The first line of a database error, without SQLAlchemy's wrapping."""
    original = getattr(error, "orig", None) or error
    return str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__


def create_registry_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise DatabaseError(
            f'"{url}" is not a database URL; use e.g. sqlite:///protoreg.db or '
            "postgresql+psycopg://user@host/dbname"
        ) from error
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database or "")
    try:
        return create_engine(url, pool_pre_ping=True)
    except ModuleNotFoundError as error:
        hint = (
            "install it with pip install 'protoreg[postgres]'"
            if parsed.get_backend_name() == "postgresql"
            else "install the driver the URL names"
        )
        raise DatabaseError(
            f'The database driver for {describe_url(url)} is not installed (no module "{error.name}"); {hint}'
        ) from error
    except Exception as error:  # an unknown dialect and the like
        raise DatabaseError(f"Cannot use the database URL {describe_url(url)}: {error}") from error


def _sqlite_engine(url: str, database: str) -> Engine:
    if database and database != ":memory:":
        parent = Path(database).expanduser().resolve().parent
        if not parent.is_dir():
            raise DatabaseError(
                f'The directory "{parent}" for the registry database does not exist; create it '
                "or choose another --db"
            )
    engine = create_engine(url, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Take the write lock up front so two writers never both read the same history.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


WAY_OUT = "point --db (or $PROTOREG_DB, or db under [tool.protoreg]) at the registry"


def open_registry(url: str | None = None, *, create: bool = True) -> Registry:
    """Open (upgrading as needed) the registry at ``url``.

    With ``create`` false (every command that only reads) a database that does not exist, or
    holds no protoreg registry, is refused untouched: a read must never start from nothing and
    report "first release" to a CI gate that is looking in the wrong place.
    """
    resolved = resolve_url(url)
    if not create:
        _refuse_missing_file(resolved)
    engine = create_registry_engine(resolved)
    try:
        if not create:
            _refuse_not_a_registry(engine, resolved)
        retry(lambda: ensure_schema(engine, describe_url(resolved)))
    except DBAPIError as error:
        engine.dispose()
        raise DatabaseError(f"Cannot open the registry at {describe_url(resolved)}: {first_line(error)}") from error
    return Registry(engine, resolved)


def _sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names (None for other backends and in-memory databases)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None  # create_registry_engine says what is wrong with it
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).expanduser()


def _refuse_missing_file(url: str) -> None:
    path = _sqlite_file(url)
    if path is not None and not path.is_file():
        raise DatabaseError(
            f'There is no registry at {describe_url(url)}: the file "{path}" does not exist; {WAY_OUT}, '
            "or run protoreg register (or protoreg import) to create one"
        )


def _table_names(engine: Engine, url: str) -> set[str]:
    path = _sqlite_file(url)
    if path is None:
        return set(inspect(engine).get_table_names())
    # Read-only and outside the engine, whose connections switch the file to WAL: a file that
    # turns out not to be a registry must be left exactly as it was.
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        connection.close()


def _refuse_not_a_registry(engine: Engine, url: str) -> None:
    try:
        tables = _table_names(engine, url)
    except sqlite3.DatabaseError as error:
        raise DatabaseError(
            f"Cannot read the database at {describe_url(url)} ({error}); it was not changed; {WAY_OUT}"
        ) from error
    if "alembic_version" in tables:
        return
    engine.dispose()
    what = "it is empty" if not tables else f"it holds other tables ({', '.join(sorted(tables)[:5])})"
    raise DatabaseError(
        f"The database at {describe_url(url)} is not a protoreg registry ({what}) and was not changed; "
        f"{WAY_OUT}, or run protoreg register (or protoreg import) to create one"
    )
