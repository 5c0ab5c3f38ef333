"""The registry's database schema: which revision a database is at, and upgrading it.

Alembic owns the schema (``migrations/``, shipped inside the package). :func:`schema_state`
says whether a database is current, behind (or empty) or written by a newer protoreg (refused,
untouched); :func:`upgrade_schema` brings one to the head revision under a lock, so concurrent
first opens upgrade once. :func:`ensure_schema` is both, as a writer needs it. A database already
at head, nearly every open, costs one query: the head is read from the revision files without
importing Alembic.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from protoreg import migrations

from . import __version__
from .errors import DatabaseVersionError

if TYPE_CHECKING:
    from alembic.config import Config

PG_LOCK_KEY = 0x70726F74  # "prot": serialises schema upgrades across processes
MIGRATIONS_DIR = Path(migrations.__file__).parent

SchemaState = Literal["current", "behind"]


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def schema_head() -> str:
    """The newest revision this protoreg knows."""
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    return str(heads[0])


def current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {rev.revision for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


_REVISION_LINE = re.compile(r"^(down_revision|revision)\s*=\s*['\"]?([\w-]+|None)['\"]?\s*$", re.MULTILINE)


def head_from_files() -> str | None:
    """The head revision read from ``migrations/versions/*.py`` without importing Alembic.

    Alembic costs a fifth of a second to import and load; a database already at head (nearly
    every open) needs neither. None when the files do not say it plainly (Alembic decides then).
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found = dict((key, value) for key, value in _REVISION_LINE.findall(path.read_text()))
        if "revision" in found:
            revisions.add(found["revision"])
            parents.add(found.get("down_revision", "None"))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def stored_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    except DBAPIError:
        return None
    return str(rows[0][0]) if len(rows) == 1 else None


def schema_state(engine: Engine, where: str) -> SchemaState:
    """``current`` or ``behind`` (an empty database is behind); refuses a newer database.

    ``where`` names the database in the error (a URL without its password).
    """
    quick_head = head_from_files()
    if quick_head is not None and stored_revision(engine) == quick_head:
        return "current"
    head = schema_head()
    with engine.connect() as connection:
        current = current_revision(connection)
    if current == head:
        return "current"
    if current is not None and current not in _known_revisions():
        raise DatabaseVersionError(
            f"The registry at {where} is at schema revision {current}, which this "
            f"protoreg ({__version__}, up to revision {head}) does not know: it was written by a "
            "newer protoreg. Upgrade protoreg; the database was not changed"
        )
    return "behind"


def upgrade_schema(engine: Engine) -> None:
    """Upgrade the database to the head revision (one process at a time)."""
    from alembic import command

    head = schema_head()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
        if current_revision(connection) != head:
            command.upgrade(alembic_config(connection), "head")


def ensure_schema(engine: Engine, where: str) -> None:
    """Upgrade the database to the head revision, or refuse one newer than this protoreg."""
    if schema_state(engine, where) == "behind":
        upgrade_schema(engine)


def upgrade_registry(url: str, where: str) -> tuple[str | None, str]:
    """``protoreg upgrade``: the revision a registry was at, and the one it is at now (head).

    Refuses a file or database that holds no registry (it would gain tables), as reads do.
    """
    from .database import create_registry_engine, first_line, refuse_missing_file, refuse_not_a_registry
    from .errors import DatabaseError
    from .retry import retry

    refuse_missing_file(url)
    engine = create_registry_engine(url)
    try:
        refuse_not_a_registry(engine, url)
        before = stored_revision(engine)
        retry(lambda: ensure_schema(engine, where))
        return before, schema_head()
    except DBAPIError as error:
        raise DatabaseError(f"Cannot upgrade the registry at {where}: {first_line(error)}") from error
    finally:
        engine.dispose()
