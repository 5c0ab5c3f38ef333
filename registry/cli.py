"""The ``protoreg`` command line. Each command parses arguments, calls one library function and
formats its result; user errors become one sentence on stderr with no traceback.

Exit codes: 0 success, 1 could not complete, 2 usage error, 100 findings need a bigger bump.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from . import __version__, ir
from .errors import ProtoregError, UsageError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_FINDINGS = 100


class ProtoregGroup(click.Group):
    """Turns :class:`ProtoregError` into one line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ProtoregError as error:
            click.echo(f"Error: {error}", err=True)
            ctx.exit(error.exit_code)


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
    ctx.obj = {"db_url": db_url, "protos_dir": protos_dir}


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    error = UsageError(message) if code == EXIT_USAGE else ProtoregError(message)
    raise error


def _open(ctx: click.Context) -> Any:
    from .database import open_registry

    return open_registry(ctx.obj["db_url"])


def _models(refs: tuple[str, ...], all_models: bool) -> list[Any]:
    from .loader import load_models

    if not refs and not all_models:
        _fail("name at least one MODEL_REF (module:Class or an entry-point name), or pass --all")
    models = load_models(refs, all_models)
    if not models:
        _fail("--all found no installed models in the protoreg.models entry points; install one")
    return models


# -- register ------------------------------------------------------------------------------


@main.command()
@click.argument("model_refs", nargs=-1, metavar="MODEL_REF...")
@click.option("--all", "all_models", is_flag=True, help="Register every entry-point model.")
@click.option("--dry-run", is_flag=True, help="Show what would be allocated; change nothing.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github"]), default="text",
              show_default=True, help="Format of the compatibility findings.")
@click.pass_context
def register(ctx: click.Context, model_refs: tuple[str, ...], all_models: bool, dry_run: bool,
             fmt: str) -> None:
    """Record a release of each model: allocate numbers and re-render proto_versions/.

    The release is checked first, exactly as `protoreg check` does; when its version bump is
    too small for what changed it is refused with exit code 100 and nothing is written.
    Registering the same version with the same schema again is a no-op (exit 0); the same
    version with a different schema, or a version lower than the newest, is refused.
    """
    from .compat.findings import format_reports
    from .compat.gate import BumpTooSmallError, ReleaseGate
    from .registration import register_release
    from .render import render_tree, write_tree
    from .schema import extract_schema

    models = _models(model_refs, all_models)
    schemas = [extract_schema(m) for m in models]
    root: Path = ctx.obj["protos_dir"]
    refused: list[str] = []
    human = fmt == "text"  # with json or github, stdout carries only the findings; the rest goes to stderr
    with _open(ctx) as registry:
        for schema in schemas:
            gate = ReleaseGate(file_prefix=str(root))
            try:
                result = register_release(registry, schema, dry_run=dry_run, gate=gate)
            except BumpTooSmallError as error:
                click.echo(format_reports([error.report], fmt))
                click.echo(f"{schema.model} {schema.version}: refused; nothing was registered", err=True)
                refused.append(schema.model)
                continue
            if result.status == "unchanged":
                click.echo(
                    f"{schema.model} {schema.version}: already registered with this schema; nothing to do",
                    err=not human,
                )
                continue
            verb = "would register" if dry_run else "registered"
            click.echo(f"{schema.model} {schema.version}: {verb} ({result.package.package})", err=not human)
            for change in result.changes:
                click.echo(f"  {change.describe()}", err=not human)
            if not result.changes:
                click.echo("  no field or enum value changed", err=not human)
            if gate.report is not None and (gate.report.findings or not human):
                click.echo(format_reports([gate.report], fmt))
        if not dry_run:
            written = write_tree(root, render_tree(registry.served_packages()))
            for path in written:
                click.echo(f"wrote {root / path}", err=not human)
    if refused:
        ctx.exit(EXIT_FINDINGS)


# -- history -------------------------------------------------------------------------------


@main.command()
@click.argument("model")
@click.pass_context
def history(ctx: click.Context, model: str) -> None:
    """List the releases of MODEL, oldest first, with date and what changed."""
    with _open(ctx) as registry:
        releases = registry.releases(model)
    for release in releases:
        stamp = release.created_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        click.echo(f"{release.version}  {stamp}  {release.package.package}")
        for change in release.changes or ("no field or enum value changed",):
            click.echo(f"  {change}")


# -- fields --------------------------------------------------------------------------------


def field_map(package: ir.Package) -> dict[str, Any]:
    """The JSON form of ``protoreg fields``: names are full names inside the package."""
    return {
        "model": package.model,
        "version": package.version,
        "package": package.package,
        "messages": [
            {
                "name": m.name,
                "fields": [
                    {"name": f.name, "number": f.number, "type": f.proto_type, "label": f.label,
                     "required": f.required}
                    for f in m.fields
                ],
                "reserved_numbers": [n for n in ir.expand_ranges(m.reserved_numbers)],
                "reserved_names": list(m.reserved_names),
            }
            for m in package.messages
        ],
        "enums": [
            {
                "name": e.name,
                "values": [{"name": v.name, "number": v.number} for v in e.values],
                "reserved_numbers": [n for n in ir.expand_ranges(e.reserved_numbers)],
                "reserved_names": list(e.reserved_names),
            }
            for e in package.enums
        ],
    }


@main.command()
@click.argument("model")
@click.option("--version", "version", metavar="V", help="A registered version (default: the newest).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Output format; json is documented in the README.")
@click.pass_context
def fields(ctx: click.Context, model: str, version: str | None, fmt: str) -> None:
    """Show the field map of MODEL: every message, field number, enum value and reservation."""
    with _open(ctx) as registry:
        release = registry.release(model, version)
    data = field_map(release.package)
    if fmt == "json":
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"{model} {release.version} ({release.package.package})")
    for message in release.package.messages:
        click.echo(f"message {message.name}")
        for f in message.fields:
            required = "  (required)" if f.required else ""
            click.echo(f"  {f.number:>5}  {f.name}: {f.declaration_label}{f.proto_type}{required}")
        if message.reserved_numbers:
            click.echo(f"  reserved {', '.join(map(str, message.reserved_numbers))}")
        if message.reserved_names:
            click.echo(f"  reserved {', '.join(message.reserved_names)}")
    for enum in release.package.enums:
        click.echo(f"enum {enum.name}")
        for v in enum.values:
            click.echo(f"  {v.number:>5}  {v.name}")
        if enum.reserved_numbers:
            click.echo(f"  reserved {', '.join(map(str, enum.reserved_numbers))}")
        if enum.reserved_names:
            click.echo(f"  reserved {', '.join(enum.reserved_names)}")


# -- render --------------------------------------------------------------------------------


@main.command()
@click.option("--check", is_flag=True, help="Write nothing; exit 1 and name the stale files if any.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Write here instead of --protos.")
@click.option("--release", "release_ref", metavar="MODEL==VERSION",
              help="Render one registered release (with --out).")
@click.pass_context
def render(ctx: click.Context, check: bool, out_dir: Path | None, release_ref: str | None) -> None:
    """Render proto_versions/ from the registry (the newest release of each major line)."""
    from .render import diff_tree, render_tree, write_tree

    root = out_dir or ctx.obj["protos_dir"]
    with _open(ctx) as registry:
        if release_ref is not None:
            model, sep, version = release_ref.partition("==")
            if not sep or not model or not version:
                _fail(f'--release wants MODEL==VERSION, e.g. iris_model==1.0.0, not "{release_ref}"')
            if out_dir is None:
                _fail("--release needs --out DIR, so a past release never overwrites proto_versions/")
            packages = [registry.release(model, version).package]
        else:
            packages = registry.served_packages()
    files = render_tree(packages)
    if check:
        diff = diff_tree(root, files)
        if diff.clean:
            click.echo(f"{root}: up to date ({len(files)} files)")
            return
        for path in diff.stale:
            click.echo(f"stale: {root / path}", err=True)
        for path in diff.missing:
            click.echo(f"missing: {root / path}", err=True)
        click.echo(f"Error: {root} is out of date; run `protoreg render` and commit the result", err=True)
        sys.exit(EXIT_FAILED)
    written = write_tree(root, files)
    for path in written:
        click.echo(f"wrote {root / path}")
    if not written:
        click.echo(f"{root}: up to date ({len(files)} files)")


# -- verify --------------------------------------------------------------------------------


@main.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Output format of the problems found.")
@click.pass_context
def verify(ctx: click.Context, fmt: str) -> None:
    """Check every invariant over the whole registry; exit 1 with the problems if one fails.

    Numbers unique and in range, reservations complete, the allocation ledger matching the
    releases (no orphaned or missing allocation), stored renderings equal to a fresh render.
    Read-only: run it after a crash, a restore or a migration.
    """
    from .verify import verify_registry

    with _open(ctx) as registry:
        report = verify_registry(registry)
    if fmt == "json":
        click.echo(json.dumps({
            "ok": report.ok, "models": report.models, "releases": report.releases,
            "problems": [{"check": p.check, "model": p.model, "version": p.version, "message": p.message}
                         for p in report.problems],
        }, indent=2))
    else:
        for problem in report.problems:
            click.echo(problem.describe())
        state = "consistent" if report.ok else f"{len(report.problems)} problems"
        click.echo(f"registry {state}: {report.models} models, {report.releases} releases checked")
    if not report.ok:
        ctx.exit(EXIT_FAILED)


# -- serve, predict (the gRPC side lives in service/) -------------------------------------

from service.commands import predict, serve  # noqa: E402

main.add_command(serve)
main.add_command(predict)


# -- compatibility commands (registry/compat/commands.py) ---------------------------------

from .compat.commands import breaking, check, diff, rules  # noqa: E402

main.add_command(check)
main.add_command(diff)
main.add_command(breaking)
main.add_command(rules)


if __name__ == "__main__":  # pragma: no cover
    main()
