"""Opening a registry database: its URL, the SQLAlchemy engine and its SQLite settings.

:func:`open_registry` is the one way in: it resolves the URL (``--db``, ``$PROTOREG_DB``, or
``sqlite:///protoreg.db``), creates the engine, brings the schema up to date
(:mod:`protoreg.registry.upgrade`, retried like any transaction) and hands back a
:class:`~protoreg.registry.store.Registry`. SQLite runs in WAL mode with a busy timeout and foreign keys
on, and every transaction takes the write lock at ``BEGIN`` so two writers never read the same
history. A command that only reads opens the database read-only (:func:`open_registry` with
``create`` false): SQLite through a ``mode=ro`` URI (``immutable=1`` when the file's directory
cannot be written, so a WAL database on read-only media still opens), PostgreSQL in read-only
transactions; it never creates, migrates or converts anything.
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
from .upgrade import ensure_schema, schema_head, schema_state, stored_revision

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


def create_registry_engine(url: str, *, read_only: bool = False) -> Engine:
    """The engine for ``url``; ``read_only`` for commands that must not change the database."""
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise DatabaseError(
            f'"{url}" is not a database URL; use e.g. sqlite:///protoreg.db or '
            "postgresql+psycopg://user@host/dbname"
        ) from error
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if read_only and database and database != ":memory:":
            return _sqlite_read_only_engine(Path(database).expanduser())
        return _sqlite_engine(url, database)
    try:
        engine = create_engine(url, pool_pre_ping=True)
        if read_only and parsed.get_backend_name() == "postgresql":
            _postgres_read_only(engine)
        return engine
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


SQLITE_CANTOPEN = 14


def _sqlite_read_only_uri(path: Path) -> str:
    """A ``mode=ro`` URI for ``path``, or ``immutable=1`` when SQLite could not open it read-only.

    A WAL database needs its ``-shm`` file; on read-only media (a mounted backup, a CI cache)
    nothing can create it, so the file is read as immutable there.
    """
    base = path.resolve().as_uri()
    try:
        probe = sqlite3.connect(f"{base}?mode=ro", uri=True)
        try:
            probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return f"{base}?mode=ro"
        finally:
            probe.close()
    except sqlite3.OperationalError as error:
        if error.sqlite_errorcode & 0xFF != SQLITE_CANTOPEN:
            return f"{base}?mode=ro"  # a damaged or locked file: the caller reports it
        wal = path.with_name(path.name + "-wal")
        if wal.is_file() and wal.stat().st_size > 0:
            # immutable=1 reads the main file only: committed releases in the log would be missed.
            raise DatabaseError(
                f'The registry "{path}" cannot be opened read-only: its directory cannot be written and it has '
                f'a write-ahead log ("{wal.name}") that was never checkpointed; copy the database with its '
                "-wal file to a writable directory, or checkpoint it (open it once with protoreg where it can "
                "be written) before making it read-only"
            ) from error
        return f"{base}?immutable=1"
    except (sqlite3.DatabaseError, UnicodeDecodeError):  # sqlite3 decodes a damaged schema's message as UTF-8
        return f"{base}?mode=ro"


def _sqlite_read_only_engine(path: Path) -> Engine:
    uri = _sqlite_read_only_uri(path)
    engine = create_engine(
        "sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, timeout=60, check_same_thread=False)
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # No journal-mode change (that is a write), and a plain deferred BEGIN: no write lock.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN")

    return engine


def _postgres_read_only(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Every transaction on this engine is READ ONLY: the server refuses any write.
        dbapi_connection.read_only = True


WAY_OUT = "point --db (or $PROTOREG_DB, or db under [tool.protoreg]) at the registry"


def open_registry(url: str | None = None, *, create: bool = True) -> Registry:
    """Open (upgrading as needed) the registry at ``url``.

    With ``create`` false (every command that only reads) a database that does not exist, or
    holds no protoreg registry, is refused untouched: a read must never start from nothing and
    report "first release" to a CI gate that is looking in the wrong place.
    """
    resolved = resolve_url(url)
    if not create:
        refuse_missing_file(resolved)
    engine = create_registry_engine(resolved, read_only=not create)
    try:
        if not create:
            refuse_not_a_registry(engine, resolved)
            _refuse_behind(engine, resolved)
        else:
            existing = _sqlite_file(resolved)
            if existing is not None and existing.is_file():
                refuse_not_a_registry(engine, resolved, allow_empty=True)
            retry(lambda: ensure_schema(engine, describe_url(resolved)))
    except DBAPIError as error:
        engine.dispose()
        raise DatabaseError(f"Cannot open the registry at {describe_url(resolved)}: {first_line(error)}") from error
    return Registry(engine, resolved)


def _refuse_behind(engine: Engine, url: str) -> None:
    """A read never migrates: a registry at an older schema revision is named with the command that
    upgrades it (one newer than this protoreg is refused by :func:`schema_state` itself)."""
    if schema_state(engine, describe_url(url)) == "behind":
        revision = stored_revision(engine)
        engine.dispose()
        raise DatabaseError(
            f"The registry at {describe_url(url)} was written by an older protoreg (schema revision "
            f"{revision or 'none'}, this protoreg needs {schema_head()}); a command that only reads "
            f"never changes it: run `protoreg --db {describe_url(url)} upgrade` first"
        )


def _sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names (None for other backends and in-memory databases)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None  # create_registry_engine says what is wrong with it
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).expanduser()


def refuse_missing_file(url: str) -> None:
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
    connection = sqlite3.connect(_sqlite_read_only_uri(path), uri=True)
    try:
        return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        connection.close()


REGISTRY_TABLES = frozenset({"alembic_version", "models", "releases"})
"""Tables every protoreg registry has had since its first schema revision."""


def refuse_not_a_registry(engine: Engine, url: str, *, allow_empty: bool = False) -> None:
    """Refuse, untouched, a database that holds no protoreg registry.

    ``allow_empty`` (a writer creating a registry): an empty database is fine, and so is any
    PostgreSQL database (a schema there may be shared); a SQLite file that holds another
    application's tables is still refused, because a file belongs to one application.
    """
    try:
        tables = _table_names(engine, url)
    except (sqlite3.DatabaseError, UnicodeDecodeError) as error:
        if isinstance(error, UnicodeDecodeError):
            error = sqlite3.DatabaseError("malformed database schema")
        raise DatabaseError(
            f"Cannot read the database at {describe_url(url)} ({error}); it was not changed; {WAY_OUT}"
        ) from error
    if REGISTRY_TABLES <= tables:
        return
    if allow_empty and (not tables or _sqlite_file(url) is None):
        return
    engine.dispose()
    what = "it is empty" if not tables else f"it holds other tables ({', '.join(sorted(tables)[:5])})"
    raise DatabaseError(
        f"The database at {describe_url(url)} is not a protoreg registry ({what}) and was not changed; "
        f"{WAY_OUT}" + ("" if tables else ", or run protoreg register (or protoreg import) to create one")
    )
