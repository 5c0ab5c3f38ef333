"""The ``protoreg`` command: global options, error reporting, and every command, wired here.

Commands live next to the code they drive: ``registry/commands.py`` (register, history, fields,
render, verify), ``registry/adopt/commands.py`` (adopt), ``registry/compat/commands.py`` (check,
diff, breaking, rules), ``registry/site/commands.py`` (site) and ``service/commands.py`` (serve,
predict). This module is the one place that knows all of them, so ``registry`` never imports
``service``. A :class:`~protoreg.registry.errors.ProtoregError` from any command becomes one line on
stderr and its exit code.

Exit codes (``registry/errors.py``): 0 success, 1 could not complete, 2 usage error, 3 ``register``
recorded a release but could not write ``proto_versions/``, 100 findings need a bigger version bump
than declared. A database error or a full disk (:func:`~protoreg.registry.errors.explain`) is one
line too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from protoreg.registry import __version__
from protoreg.registry.adopt.commands import COMMANDS as ADOPT_COMMANDS
from protoreg.registry.commands import COMMANDS as REGISTRY_COMMANDS
from protoreg.registry.compat.commands import COMMANDS as COMPAT_COMMANDS
from protoreg.registry.errors import ProtoregError, explain
from protoreg.registry.site.commands import site
from protoreg.service.commands import predict, serve

COMMANDS: tuple[click.Command, ...] = (*REGISTRY_COMMANDS, *ADOPT_COMMANDS, *COMPAT_COMMANDS, site, serve, predict)


class ProtoregGroup(click.Group):
    """Turns :class:`ProtoregError` into one line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ProtoregError as error:
            click.echo(f"Error: {error}", err=True)
            ctx.exit(error.exit_code)
        except Exception as error:
            explained = explain(error)  # a database error, a full disk: one sentence, no traceback
            if explained is None:
                raise
            click.echo(f"Error: {explained}", err=True)
            ctx.exit(explained.exit_code)


@click.group(cls=ProtoregGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    "db_url",
    envvar="PROTOREG_DB",
    default=None,
    metavar="URL",
    help="Registry database URL (SQLAlchemy). Default: sqlite:///protoreg.db, or $PROTOREG_DB.",
)
@click.option(
    "--protos",
    "protos_dir",
    envvar="PROTOREG_PROTOS",
    default="proto_versions",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Directory of rendered protos ($PROTOREG_PROTOS).",
)
@click.version_option(__version__, prog_name="protoreg")
@click.pass_context
def main(ctx: click.Context, db_url: str | None, protos_dir: Path) -> None:
    """protoreg: typed, versioned protobuf APIs for machine-learning models.

    Register a model's pydantic schema to fix its field numbers for life, render one proto
    package per major version into proto_versions/, check that a release's version bump is big
    enough, and serve the models over gRPC.

    A MODEL_REF is either module:Class or the name of a `protoreg.models` entry point.
    """
    # Read by protoreg.registry.commands.db_url/protos_dir and by service/commands.py.
    ctx.obj = {"db_url": db_url, "protos_dir": protos_dir}


for _command in COMMANDS:
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    main()
