"""The registry commands: ``register``, ``history``, ``fields``, ``render``, ``verify``, ``export`` and
``import``.

Each parses its arguments, calls one library function and formats the result; user errors are
:class:`~protoreg.registry.errors.ProtoregError`\\s, which the ``protoreg`` group (``protoreg/cli.py``, where
every command is wired) prints as one sentence. This module also owns what every command module
shares: the global settings on the click context and the MODEL_REF arguments.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .errors import EXIT_FAILED, EXIT_FINDINGS, RecordedNotRenderedError, UsageError

if TYPE_CHECKING:
    from .compat.findings import Report
    from .compat.gate import GatedRegistration
    from .policy import Policy
    from .render import RenderedFile
    from .schema import ModelSchema
    from .store import Registry
    from .transfer import Moved

# -- shared by every command module ---------------------------------------------------------
# The protoreg group puts the global options on ctx.obj as {"db_url": ..., "protos_dir": ...}.


def policy_of(ctx: click.Context) -> Policy:
    """The project's ``[tool.protoreg]`` (read once per command; an unknown key is an error)."""
    from .policy import load_policy

    obj = ctx.find_root().obj
    if obj is None:
        return load_policy()
    if "policy" not in obj:
        obj["policy"] = load_policy()
    policy: Policy = obj["policy"]
    return policy


def db_url(ctx: click.Context) -> str | None:
    """``--db`` (or ``$PROTOREG_DB``, or ``db`` under ``[tool.protoreg]``); None means the default."""
    obj = ctx.find_root().obj or {}
    url: str | None = obj.get("db_url") or policy_of(ctx).db
    return url


def protos_dir(ctx: click.Context) -> Path:
    """``--protos`` (or ``$PROTOREG_PROTOS``): where the rendered protos live."""
    obj = ctx.find_root().obj or {}
    return Path(obj.get("protos_dir") or "proto_versions")


def open_from(ctx: click.Context, *, write: bool = False) -> Registry:
    """The registry ``--db`` names (a database or a text-form directory); ``write`` for commands
    that change it (only those may create one)."""
    from .textstore import open_location

    return open_location(db_url(ctx), write=write)


def where(ctx: click.Context) -> str:
    """The registry ``--db`` names, as messages name it."""
    from .textstore import describe_location

    return describe_location(db_url(ctx))


model_refs_argument = click.argument("model_refs", nargs=-1, metavar="MODEL_REF...")


def schemas_of(model_refs: tuple[str, ...], all_models: bool, policy: Policy | None = None) -> list[ModelSchema]:
    """The schema trees of the named models; ``--all`` adds the policy's ``models`` (every
    entry-point model when it names none)."""
    from .loader import load_models
    from .schema import extract_schema

    refs = list(model_refs)
    if all_models and policy is not None and policy.models is not None:
        if not policy.models and not refs:
            raise UsageError(f"--all covers the models listed under [tool.protoreg] in {policy.source}, and it "
                             "lists none; add MODEL_REFs to its models key")
        refs += [m for m in policy.models if m not in refs]
        all_models = False
    return [extract_schema(m) for m in load_models(refs, all_models)]


# -- register ------------------------------------------------------------------------------


@click.command()
@model_refs_argument
@click.option("--all", "all_models", is_flag=True,
              help="Register the models listed under [tool.protoreg] (default: every entry-point model).")
@click.option("--dry-run", is_flag=True, help="Show what would be allocated; change nothing.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github", "junit"]), default="text",
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
    from .compat.gate import register_checked
    from .crosscheck import CommittedRelease, refuse_unknown_releases
    from .render import render_package, render_tree

    policy = policy_of(ctx)
    schemas = schemas_of(model_refs, all_models, policy)
    root = protos_dir(ctx)
    human = fmt == "text"  # with json, github or junit, stdout carries only the findings; the rest goes to stderr
    junit: list[Report] = []  # one XML document for every model

    def emit(report: Report) -> None:
        if fmt == "junit":
            junit.append(report)
        else:
            click.echo(format_reports([report], fmt))
    with open_from(ctx, write=True) as registry:
        by_model = {s.model: s for s in schemas}

        def reproduced(committed: CommittedRelease) -> bool:
            # A model the registry has no release of, registered at the very version the committed
            # file names, rendering that file byte for byte: the tree's own source, not a wrong --db.
            schema = by_model.get(committed.model)
            if schema is None or schema.version != committed.version or registry.versions(schema.model):
                return False
            trial = register_checked(registry, schema, dry_run=True, file_prefix=str(root), policy=policy)
            return trial.result is not None and render_package(
                trial.result.package, protovalidate=policy.protovalidate
            ) == Path(committed.path).read_text(encoding="utf-8")

        refuse_unknown_releases(registry, root, where(ctx), list(by_model), reproduced)
        outcomes = [register_checked(registry, s, dry_run=dry_run, file_prefix=str(root), policy=policy)
                    for s in schemas]
        written, failure = ([], None) if dry_run else _write_after_commit(
            root, render_tree(registry.served_packages(), protovalidate=policy.protovalidate),
            [o for o in outcomes if o.result is not None])
    for outcome in outcomes:
        schema, result, report = outcome.schema, outcome.result, outcome.report
        if result is None:
            assert report is not None, "a refused registration carries the gate's report"
            emit(report)
            click.echo(f"{schema.model} {schema.version}: refused; nothing was registered", err=True)
            continue
        if result.status == "unchanged":
            click.echo(f"{schema.model} {schema.version}: already registered with this schema; nothing to do",
                       err=not human)
            continue
        verb = "would register" if dry_run else "registered"
        click.echo(f"{schema.model} {schema.version}: {verb} ({result.package.package})", err=not human)
        for change in result.changes:
            click.echo(f"  {change.describe()}", err=not human)
        if not result.changes:
            click.echo("  no field or enum value changed", err=not human)
        if report is not None and (report.findings or not human):
            emit(report)
    if junit:
        click.echo(format_reports(junit, fmt))
    for path in written:
        click.echo(f"wrote {root / path}", err=not human)
    if failure is not None:
        raise failure
    if any(o.refused for o in outcomes):
        ctx.exit(EXIT_FINDINGS)


def _write_after_commit(
    root: Path, files: list[RenderedFile], outcomes: list[GatedRegistration]
) -> tuple[list[str], RecordedNotRenderedError | None]:
    """Write proto_versions/ after the registrations committed; a failure then is exit code 3."""
    from .render import write_tree

    try:
        return write_tree(root, files), None
    except OSError as error:
        recorded = ", ".join(f"{o.schema.model} {o.schema.version}" for o in outcomes) or "the registry"
        what = error.strerror or str(error)
        where_ = f" ({error.filename})" if error.filename else ""
        return [], RecordedNotRenderedError(
            f"{recorded} is recorded in the registry, but writing {root} failed: {what}{where_}; "
            f"free the space or fix the permissions, then run `protoreg render` to repair {root}"
        )


# -- history -------------------------------------------------------------------------------


@click.command()
@click.argument("model")
@click.pass_context
def history(ctx: click.Context, model: str) -> None:
    """List the releases of MODEL, oldest first, with date and what changed."""
    with open_from(ctx) as registry:
        releases = registry.releases(model)
    for release in releases:
        stamp = release.created_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        click.echo(f"{release.version}  {stamp}  {release.package.package}")
        for change in release.changes or ("no field or enum value changed",):
            click.echo(f"  {change}")


# -- fields --------------------------------------------------------------------------------


@click.command()
@click.argument("model")
@click.option("--version", "version", metavar="V", help="A registered version (default: the newest).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Output format; json is documented in the README.")
@click.pass_context
def fields(ctx: click.Context, model: str, version: str | None, fmt: str) -> None:
    """Show the field map of MODEL: every message, field number, enum value and reservation."""
    with open_from(ctx) as registry:
        release = registry.release(model, version)
    if fmt == "json":
        from .fieldmap import field_map

        click.echo(json.dumps(field_map(release.package), indent=2))
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


@click.command()
@click.option("--check", is_flag=True, help="Write nothing; exit 1 and name the stale files if any.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Write here instead of --protos.")
@click.option("--release", "release_ref", metavar="MODEL==VERSION",
              help="Render one registered release (with --out).")
@click.pass_context
def render(ctx: click.Context, check: bool, out_dir: Path | None, release_ref: str | None) -> None:
    """Render proto_versions/ from the registry (the newest release of each major line).

    With --check, a file whose header names a release the registry does not have is an error
    too: the tree was rendered from another registry (a wrong --db).
    """
    from .crosscheck import refuse_unknown_releases
    from .render import diff_tree, render_tree, write_tree

    root = out_dir or protos_dir(ctx)
    with open_from(ctx) as registry:
        if release_ref is not None:
            model, sep, version = release_ref.partition("==")
            if not sep or not model or not version:
                raise UsageError(f'--release wants MODEL==VERSION, e.g. iris_model==1.0.0, not "{release_ref}"')
            if out_dir is None:
                raise UsageError("--release needs --out DIR, so a past release never overwrites proto_versions/")
            packages = [registry.release(model, version).package]
        else:
            packages = registry.served_packages()
        if check and release_ref is None:
            refuse_unknown_releases(registry, root, where(ctx))
    files = render_tree(packages, protovalidate=policy_of(ctx).protovalidate)
    if check:
        diff = diff_tree(root, files)
        if diff.clean:
            click.echo(f"{root}: up to date ({len(files)} files)")
            return
        for path in diff.stale:
            click.echo(f"stale: {root / path}", err=True)
        for path in diff.missing:
            click.echo(f"missing: {root / path}", err=True)
        for path in diff.extra:
            click.echo(f"extra: {root / path} (the registry never wrote it, and serve would serve it)", err=True)
        for path in diff.leftovers:
            click.echo(f"leftover: {root / path} (from an interrupted render)", err=True)
        fix = "run `protoreg render`" + (", remove the extra files" if diff.extra else "")
        click.echo(f"Error: {root} is out of date; {fix} and commit the result", err=True)
        ctx.exit(EXIT_FAILED)
    from .render import remove_leftovers

    removed = remove_leftovers(root) if root.is_dir() else []
    written = write_tree(root, files)
    for path in removed:
        click.echo(f"removed {root / path} (left by an interrupted render)")
    for path in written:
        click.echo(f"wrote {root / path}")
    for path in diff_tree(root, files).extra:
        click.echo(f"extra: {root / path} (the registry never wrote it; remove it, or serve serves it)", err=True)
    if not written:
        click.echo(f"{root}: up to date ({len(files)} files)")


# -- verify --------------------------------------------------------------------------------


@click.command()
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

    with open_from(ctx) as registry:
        report = verify_registry(registry)
    if fmt == "json":
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for problem in report.problems:
            click.echo(problem.describe())
        for note in report.notes:
            click.echo(f"note: {note}")
        state = "consistent" if report.ok else f"{len(report.problems)} problems"
        click.echo(f"registry {state}: {report.models} models, {report.releases} releases checked")
    if not report.ok:
        ctx.exit(EXIT_FAILED)


# -- export and import ---------------------------------------------------------------------


def _describe_moves(moves: list[Moved], target: str) -> None:
    for moved in moves:
        if moved.outcome == "unchanged":
            click.echo(f"{moved.model}: already in {target}, unchanged")
        else:
            verb = "added" if moved.outcome == "added" else "extended"
            click.echo(f"{moved.model}: {verb} ({', '.join(moved.versions)})")
    written = sum(1 for m in moves if m.outcome != "unchanged")
    click.echo(f"{written} of {len(moves)} models written to {target}")


@click.command()
@click.argument("models", nargs=-1, metavar="[MODEL...]")
@click.option("--to", "target", required=True, metavar="TARGET",
              help="A directory for the text form (created if needed), a database URL, or - to print the text "
                   "form on stdout.")
@click.pass_context
def export(ctx: click.Context, models: tuple[str, ...], target: str) -> None:
    """Copy the registry, or the named models, to the text form or to another database.

    Reads --db and writes TARGET in one transaction, as `protoreg import` does: a model TARGET
    lacks is added, one it holds with the same releases is left alone, one whose releases in
    TARGET are the first of --db's gets the rest; anything else is refused and nothing is written.
    """
    from .textform import format_model
    from .textstore import describe_location, open_location
    from .transfer import transfer

    with open_from(ctx) as source:
        if target == "-":
            names = list(dict.fromkeys(models)) or source.model_names()
            for name in names:
                click.echo(format_model(source.model_record(name)), nl=False)
            return
        with open_location(target, write=True) as destination:
            moves = transfer(source, destination, models, source_name=where(ctx),
                             target_name=describe_location(target))
    _describe_moves(moves, describe_location(target))


@click.command("import")
@click.argument("source_url", metavar="SOURCE")
@click.argument("models", nargs=-1, metavar="[MODEL...]")
@click.pass_context
def import_registry(ctx: click.Context, source_url: str, models: tuple[str, ...]) -> None:
    """Copy every model (or the named ones) of SOURCE, a text-form directory or a database URL, into --db.

    One transaction: a model --db lacks is added, one it holds with the same releases is left
    alone, one whose releases in --db are the first of SOURCE's gets the rest. Any other
    difference is a conflict: the import is refused and nothing is written. Creates --db when it
    does not exist.
    """
    from .textstore import describe_location, open_location
    from .transfer import transfer

    with open_location(source_url) as source, open_from(ctx, write=True) as destination:
        moves = transfer(source, destination, models, source_name=describe_location(source_url),
                         target_name=where(ctx))
    _describe_moves(moves, where(ctx))


# -- upgrade -------------------------------------------------------------------------------


@click.command()
@click.pass_context
def upgrade(ctx: click.Context) -> None:
    """Bring the registry database --db to this protoreg's schema revision.

    Commands that only read never migrate a database; they name this command when the database
    is behind. register and import upgrade the database they write implicitly.
    """
    from .textstore import is_text_location
    from .upgrade import upgrade_registry

    url = db_url(ctx)
    from .database import resolve_url

    if is_text_location(resolve_url(url)):
        raise UsageError(f"{where(ctx)} is a text-form registry; it has no schema revision to upgrade")
    before, after = upgrade_registry(resolve_url(url), where(ctx))
    if before == after:
        click.echo(f"{where(ctx)}: already at schema revision {after}")
    else:
        click.echo(f"{where(ctx)}: upgraded from schema revision {before or 'none'} to {after}")


COMMANDS = (register, history, fields, render, verify, upgrade, export, import_registry)
