"""The rule catalogue: declarations and handlers match one to one, IDs are stable and unique,
``protoreg rules`` and ``docs/rules.md`` agree, and the README documents the new commands."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from protoreg.cli import main
from protoreg.registry.compat.commands import rules_markdown
from protoreg.registry.compat.findings import CATEGORIES
from protoreg.registry.compat.rules import HANDLERS, RULES, Rule

ROOT = Path(__file__).resolve().parent.parent


def test_every_declaration_has_exactly_one_handler_and_ids_are_unique() -> None:
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids)), "duplicate rule IDs"
    assert set(ids) == set(HANDLERS), f"unmatched: {set(ids) ^ set(HANDLERS)}"
    for rule_id, function in HANDLERS.items():
        assert function.__name__ == rule_id.lower()


def test_declarations_are_well_formed() -> None:
    for rule in RULES:
        assert re.fullmatch(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)*", rule.id), rule.id
        assert rule.category in CATEGORIES
        assert rule.request in ("none", "patch", "minor", "major")
        assert rule.response in ("none", "patch", "minor", "major")
        assert rule.description.endswith("."), rule.id
        assert rule.reference
        if rule.deprecated_by is not None:
            assert rule.deprecated_by in {r.id for r in RULES}


def test_direction_bumps_follow_the_design() -> None:
    by_id: dict[str, Rule] = {r.id: r for r in RULES}
    assert (by_id["FIELD_ADDED_REQUIRED"].request, by_id["FIELD_ADDED_REQUIRED"].response) == (
        "major",
        "minor",
    )
    assert (by_id["FIELD_REMOVED"].request, by_id["FIELD_REMOVED"].response) == ("minor", "major")
    assert by_id["ENUM_VALUE_ADDED"].response == "minor" and by_id["ENUM_VALUE_ADDED"].warns("response")
    assert not by_id["ENUM_VALUE_ADDED"].warns("request")
    assert by_id["FIELD_REMOVED"].bump("both") == "major"


def test_docs_rules_md_is_generated_from_the_declarations() -> None:
    path = ROOT / "docs" / "rules.md"
    assert path.read_text(encoding="utf-8") == rules_markdown(), (
        "docs/rules.md is stale; run: protoreg rules --format markdown > docs/rules.md"
    )


def test_rules_command_lists_every_rule_in_each_format() -> None:
    runner = CliRunner()
    text = runner.invoke(main, ["rules"])
    assert text.exit_code == 0, text.output
    for rule in RULES:
        assert rule.id in text.output
    as_json = runner.invoke(main, ["rules", "--format", "json"])
    assert [r["id"] for r in json.loads(as_json.output)] == [r.id for r in RULES]
    markdown = runner.invoke(main, ["rules", "--format", "markdown"])
    assert markdown.output == rules_markdown()


def test_readme_documents_the_compatibility_commands_and_options() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for command in ("check", "diff", "breaking", "rules"):
        assert f"`protoreg {command}" in readme, command
        assert command in main.commands
    for option in ("--against", "--category", "--format"):
        assert option in readme
    for code in ("`0`", "`1`", "`2`", "`100`"):
        assert code in readme
