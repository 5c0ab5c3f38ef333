"""The ``protoreg adopt`` command: a model's first release, numbered from an existing API."""

from __future__ import annotations

from pathlib import Path

import click

from ..commands import open_from, policy_of, protos_dir, schemas_of, where


@click.command()
@click.argument("model_ref", metavar="MODEL_REF")
@click.option("--proto", "proto_files", multiple=True, required=True, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="A .proto file of the existing API (repeat for several; imports resolve from their common "
                   "directory).")
@click.option("--request", required=True, metavar="MSG",
              help="The existing request message that becomes PredictRequest (full or short name).")
@click.option("--response", required=True, metavar="MSG",
              help="The existing response message that becomes PredictResponse (full or short name).")
@click.option("--rpc", metavar="/PKG.SERVICE/METHOD",
              help="The existing method old clients call; `protoreg serve` answers it with the adopted line.")
@click.option("--dry-run", is_flag=True, help="Show the plan (kept, reserved and new numbers); record nothing.")
@click.pass_context
def adopt(ctx: click.Context, model_ref: str, proto_files: tuple[Path, ...], request: str, response: str,
          rpc: str | None, dry_run: bool) -> None:
    """Record MODEL_REF's first release from an existing API, keeping what its clients rely on.

    Field numbers, enum values, reserved ranges and implicit presence come from the existing
    messages (and the messages and enums reachable from them). The model's schema must fit them:
    every mismatch is listed with the line to write, and nothing is recorded until all fit.
    Fields of the existing API the model lacks are reserved (number and name); fields the model
    adds get numbers above every number in use. Later releases evolve under the usual rules
    (`protoreg register`), and `history` names the file the first release was adopted from.
    """
    from ..compat.gate import ReleaseGate
    from ..crosscheck import refuse_unknown_releases
    from ..registration import register_release
    from ..render import render_tree, write_tree
    from .fit import AdoptionMismatchError, plan_adoption

    policy = policy_of(ctx)
    (schema,) = schemas_of((model_ref,), False, policy)
    try:
        plan = plan_adoption(schema, list(proto_files), request, response, rpc)
    except AdoptionMismatchError as error:
        for mismatch in error.mismatches:
            click.echo(mismatch.describe(), err=True)
        raise
    root = protos_dir(ctx)
    gate = ReleaseGate(file_prefix=str(root), policy=policy)
    # like register, even for --dry-run: an adoption is a first release, so there may be no registry yet
    with open_from(ctx, write=True) as registry:
        refuse_unknown_releases(registry, root, where(ctx), [schema.model])
        result = register_release(registry, schema, dry_run=dry_run, gate=gate, adopting=plan)
        written = [] if dry_run else write_tree(root, render_tree(registry.served_packages()))
    if result.status == "unchanged":
        click.echo(f"{schema.model} {schema.version}: already adopted with this schema; nothing to do")
        return
    verb = "would adopt" if dry_run else "adopted"
    click.echo(f"{schema.model} {schema.version}: {verb} ({result.package.package})")
    for line in plan.lines():
        click.echo(f"  {line}")
    for change in result.changes:
        click.echo(f"  {change.describe()}")
    for path in written:
        click.echo(f"wrote {root / path}")


COMMANDS = (adopt,)
