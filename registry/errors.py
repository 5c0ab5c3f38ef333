"""The errors a user can cause.

Every exception here carries one sentence that says what was wrong, the offending value and the
fix. The CLI prints that sentence without a traceback; anything else is a bug and keeps its
traceback. The process exit codes live here too, the same for every command.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
"""The command could not complete (a user error, or a check such as ``verify`` that failed)."""
EXIT_USAGE = 2
EXIT_RECORDED_NOT_RENDERED = 3
"""``register`` recorded the release, but writing ``proto_versions/`` failed; ``protoreg render`` repairs it."""
EXIT_FINDINGS = 100
"""Compatibility findings need a bigger version bump than declared (buf uses 100 as well)."""


class ProtoregError(Exception):
    """A problem the user can fix. ``str(error)`` is the whole message."""

    exit_code = EXIT_FAILED


class UsageError(ProtoregError):
    """Bad command-line input (exit code 2)."""

    exit_code = EXIT_USAGE


class ModelLoadError(ProtoregError):
    """A MODEL_REF that cannot be imported or does not look like a model."""


class SchemaError(ProtoregError):
    """A pydantic schema that cannot be expressed in proto3."""

    def __init__(self, model: str, path: str, problem: str) -> None:
        self.model = model
        self.path = path
        self.problem = problem
        where = f'"{path}"' if path else "the schema"
        super().__init__(f'Model "{model}": {where}: {problem}')


class VersionError(ProtoregError):
    """A version string that is not semver, or that goes backwards."""


class ReleaseConflictError(ProtoregError):
    """A release that already exists with a different schema."""


class NumberingError(ProtoregError):
    """A field number that cannot be allocated (for example past the protobuf limit)."""


class DatabaseVersionError(ProtoregError):
    """A registry database written by a newer protoreg."""


class DatabaseError(ProtoregError):
    """A registry database that cannot be opened or reached."""


class NotFoundError(ProtoregError):
    """A model or release that is not in the registry."""


class RecordedNotRenderedError(ProtoregError):
    """A registration committed, then writing ``proto_versions/`` failed (exit code 3)."""

    exit_code = EXIT_RECORDED_NOT_RENDERED


def explain(error: BaseException) -> ProtoregError | None:
    """One sentence for an error the environment causes rather than a bug: a database error, a full
    disk, a file that cannot be written. None for anything else (a bug keeps its traceback)."""
    import errno
    import sys

    if "sqlalchemy" in sys.modules:
        from sqlalchemy.exc import DBAPIError

        if isinstance(error, DBAPIError):
            return _explain_database(error)
    if "sqlite3" in sys.modules:
        import sqlite3

        if isinstance(error, sqlite3.Error):
            return _explain_database(error)
    if isinstance(error, OSError):
        where = f" ({error.filename})" if error.filename else ""
        fix = {
            errno.ENOSPC: "free some disk space",
            errno.EDQUOT: "free some disk space",
            errno.EROFS: "the file system is read-only; use a writable location",
            errno.EACCES: "make it writable",
            errno.EPERM: "make it writable",
        }.get(error.errno or 0, "fix the cause")
        return ProtoregError(f"{error.strerror or error}{where}; {fix}, then run the command again")
    return None


def _explain_database(error: BaseException) -> ProtoregError:
    original = getattr(error, "orig", None) or error
    text = str(original).strip()
    detail = text.splitlines()[0] if text else type(original).__name__  # never the statement or its values
    state = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    code = getattr(original, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary == 8:  # SQLITE_READONLY
        fix = "make the database file and its directory writable, or point --db at a writable copy"
    elif primary == 13:  # SQLITE_FULL
        fix = "free some disk space"
    elif primary in (11, 26):  # SQLITE_CORRUPT, SQLITE_NOTADB
        fix = "run protoreg verify, and restore the registry from a backup or its text form"
    elif state and str(state).startswith("22"):
        fix = "a value does not fit the database (shorten it)"
    elif state and (str(state).startswith("08") or str(state).startswith("57")):
        fix = "the database server is unavailable; run the command again when it is back"
    else:
        fix = "check the database, then run the command again"
    suffix = f" (SQLSTATE {state})" if state else ""
    return DatabaseError(f"The registry database failed: {detail}{suffix}; the transaction was rolled back; {fix}")
