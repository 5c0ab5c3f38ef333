"""The compatibility commands: ``check``, ``diff``, ``breaking`` and ``rules``.

Each parses its arguments, calls one library function and formats the result. Exit codes: 0 the
check passed, 100 findings need a bigger bump than declared (or, for ``breaking``, a breaking
change was found), 1 the check could not complete, 2 usage error. ``protoreg/cli.py`` wires these
commands into the ``protoreg`` group.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from ..commands import db_url, model_refs_argument, open_from, policy_of, protos_dir, schemas_of, where
from ..errors import EXIT_FINDINGS, UsageError
from .findings import CATEGORIES, FORMATS, Report, format_reports
from .rules import RULES, Rule

_format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="text for people, json for tools, github for workflow annotations.",
)


def _emit(reports: list[Report], fmt: str) -> None:
    click.echo(format_reports(reports, fmt))
    if not all(r.passed for r in reports):
        click.get_current_context().exit(EXIT_FINDINGS)


# -- check ---------------------------------------------------------------------------------


@click.command()
@model_refs_argument
@click.option("--all", "all_models", is_flag=True,
              help="Check the models listed under [tool.protoreg] (default: every entry-point model).")
@click.option("--against", metavar="VERSION", help="Compare with this release instead of the newest.")
@click.option("--changed", is_flag=True,
              help="The arguments are changed files (as pre-commit passes them), not MODEL_REFs: check the "
                   "models of --all whose source, registry file or rendered protos are among them.")
@_format_option
@click.pass_context
def check(ctx: click.Context, model_refs: tuple[str, ...], all_models: bool, against: str | None, changed: bool,
          fmt: str) -> None:
    """Check that each model's declared version bump is big enough for what changed.

    The installed model is numbered against the registry's history (nothing is written) and
    compared with the newest release (or --against VERSION) and, for reused numbers and names,
    with every release ever registered. Exit 100 when a finding needs a bigger bump; exit 1 when
    proto_versions/ was rendered from releases the registry does not have (a wrong --db).
    """
    from ..crosscheck import new_model_note, refuse_unknown_releases
    from .gate import check_schema

    policy = policy_of(ctx)
    if changed:
        from ..locate import touched_by

        candidates = schemas_of((), True, policy)
        schemas = [s for s in candidates if touched_by(s, model_refs, protos_dir(ctx), db_url(ctx), policy.source)]
        if not schemas:
            click.echo(f"no model is touched by the {len(model_refs)} changed files; nothing to check")
            return
    else:
        schemas = schemas_of(model_refs, all_models, policy)
    if against is not None and len(schemas) > 1:
        raise UsageError("--against names one version of one model; check one MODEL_REF at a time with it")
    root = protos_dir(ctx)
    with open_from(ctx) as registry:
        refuse_unknown_releases(registry, root, where(ctx), [s.model for s in schemas])
        reports = [check_schema(registry, s, against=against, file_prefix=str(root), policy=policy)
                   for s in schemas]
    # No baseline: the registry has no release of the model (and the tree none, or it stopped above).
    reports = [replace(r, note=new_model_note(r.model, r.declared_version or "", where(ctx), root))
               if r.baseline_version is None else r for r in reports]
    _emit(reports, fmt)


# -- diff ----------------------------------------------------------------------------------


@click.command()
@click.argument("model")
@click.argument("v1")
@click.argument("v2")
@_format_option
@click.pass_context
def diff(ctx: click.Context, model: str, v1: str, v2: str, fmt: str) -> None:
    """Show the findings between two registered releases V1 and V2 of MODEL.

    Exit 100 when V2's version bump over V1 is too small for what changed.
    """
    from .engine import diff_releases

    with open_from(ctx) as registry:
        releases = registry.releases(model)
        first, second = registry.release(model, v1), registry.release(model, v2)
    report = diff_releases(releases, first, second, file_prefix=str(protos_dir(ctx)))
    _emit([policy_of(ctx).apply(report)], fmt)


# -- breaking ------------------------------------------------------------------------------


@click.command()
@click.argument("new", type=click.Path(exists=True, path_type=Path), metavar="NEW")
@click.option(
    "--against",
    "against",
    multiple=True,
    required=True,
    metavar="OLD",
    type=click.Path(exists=True, path_type=Path),
    help="The old API: a directory of .proto files or a FileDescriptorSet file. Repeat it "
    "to give history, oldest first; the last one is the baseline.",
)
@click.option(
    "--category",
    "categories",
    multiple=True,
    type=click.Choice(CATEGORIES),
    help="Only rules of this category (repeatable). WIRE_JSON includes WIRE, SOURCE "
    "includes both, as in buf. Default: every rule.",
)
@_format_option
@click.pass_context
def breaking(ctx: click.Context, new: Path, against: tuple[Path, ...], categories: tuple[str, ...], fmt: str) -> None:
    """Compare any two protobuf APIs (directories of .proto files or FileDescriptorSet files).

    Fields pair by number, directions come from the services. Exit 100 when a change breaks
    clients (needs a major bump); history given with several --against is checked for numbers
    and names that come back with another meaning.
    """
    from .descriptors import load_trees
    from .engine import check_trees

    *trees, after = load_trees([*against, new])
    report = check_trees(
        trees[-1],
        after,
        history=trees[:-1],
        categories=list(categories) or None,
        before_label=str(against[-1]),
        after_label=str(new),
        history_labels=[str(p) for p in against[:-1]],
        file_prefix=str(new) if new.is_dir() else "",
    )
    _emit([policy_of(ctx).apply(report)], fmt)


# -- rules ---------------------------------------------------------------------------------


def rules_json() -> str:
    return json.dumps([_rule_dict(r) for r in RULES], indent=2)


def _rule_dict(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": rule.name,
        "description": rule.description,
        "category": rule.category,
        "subject": rule.subject,
        "request_bump": rule.request,
        "response_bump": rule.response,
        "warns": rule.warn,
        "level": rule.level,
        "buf": list(rule.buf),
        "reference": rule.reference,
        "deprecated_by": rule.deprecated_by,
    }


def rules_text() -> str:
    width = max(len(r.id) for r in RULES)
    lines = [f"{'ID':<{width}}  {'CATEGORY':<9}  {'REQUEST':<7}  {'RESPONSE':<8}  DESCRIPTION"]
    for r in RULES:
        lines.append(f"{r.id:<{width}}  {r.category:<9}  {r.request:<7}  {r.response:<8}  {r.name}: {r.description}")
    return "\n".join(lines)


def rules_markdown() -> str:
    """``docs/rules.md``: generated by ``protoreg rules --format markdown``; a test keeps it current."""
    lines = [
        "# Compatibility rules",
        "",
        "<!-- Generated by `protoreg rules --format markdown > docs/rules.md`; do not edit by hand. -->",
        "",
        "Each rule requires a bump when the subject travels in requests (the server must read what "
        "old clients send) and when it travels in responses (old clients must read what the server "
        "sends); a subject that travels both ways, or that no RPC reaches, needs the larger. "
        "Categories: WIRE breaks the binary encoding, WIRE_JSON the JSON encoding, SOURCE "
        "generated code, SEMANTIC what values mean. See docs/compat.md.",
        "",
        "The buf column names the `buf breaking` rules that report the same change (in buf's own "
        "categories, which may differ); `tests/test_compat_buf.py` compares the two rule by rule.",
        "",
        "| ID | category | request | response | buf | description |",
        "|---|---|---|---|---|---|",
    ]
    for r in RULES:
        level = {
            "info": "",
            "warning_in_responses": " Warns in responses.",
            "warning": " Always warns.",
            "error": " Always an error.",
        }[r.level]
        buf = ", ".join(f"`{b}`" for b in r.buf)
        lines.append(
            f"| `{r.id}` | {r.category} | {r.request} | {r.response} | {buf} | **{r.name}**: {r.description}{level} "
            f"([ref]({r.reference.removeprefix('docs/')})) |"
        )
    return "\n".join(lines) + "\n"


@click.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
    help="markdown is what docs/rules.md holds.",
)
def rules(fmt: str) -> None:
    """List every compatibility rule: ID, category, bumps and description."""
    text = {"text": rules_text, "json": rules_json, "markdown": rules_markdown}[fmt]()
    click.echo(text, nl=not text.endswith("\n"))


COMMANDS = (check, diff, breaking, rules)
