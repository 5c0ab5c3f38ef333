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
