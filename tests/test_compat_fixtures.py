"""Before/after fixture directories, one per rule, with the expected findings listed.

Each directory under ``tests/compat_fixtures/`` holds ``before/`` and ``after/`` trees of
``.proto`` files (and, for the history rules, an older ``history/`` tree) and ``expected.txt``:
one ``RULE_ID direction bump`` line per finding ``protoreg breaking`` must report, in order.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from protoreg.cli import main
from protoreg.registry.compat.rules import RULES

FIXTURES = Path(__file__).resolve().parent / "compat_fixtures"
CASES = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())
# Rules about model versions only exist for registry releases (tests/test_compat_engine.py).
REGISTRY_ONLY = {"VERSION_NOT_BUMPED", "VERSION_WENT_BACKWARDS"}


def expected(case: str) -> list[str]:
    return (FIXTURES / case / "expected.txt").read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("case", CASES)
def test_fixture_findings(case: str) -> None:
    root = FIXTURES / case
    against = [str(root / "history")] if (root / "history").is_dir() else []
    against.append(str(root / "before"))
    args = ["breaking", str(root / "after"), *(a for path in against for a in ("--against", path)), "--format", "json"]
    result = CliRunner().invoke(main, args)
    want = expected(case)
    breaking = any(line.endswith(" major") for line in want)
    assert result.exit_code == (100 if breaking else 0), result.output
    found = [f"{f['rule']} {f['direction']} {f['required_bump']}" for f in json.loads(result.stdout)["findings"]]
    assert found == want


CONTRACT_FIXTURES = FIXTURES.parent / "contract_fixtures"  # pydantic models: tests/test_compat_contract.py


def test_every_rule_has_a_fixture() -> None:
    covered = {line.split()[0] for case in CASES for line in expected(case)}
    covered |= {line.split()[0] for path in CONTRACT_FIXTURES.glob("*/expected.txt")
                for line in path.read_text(encoding="utf-8").splitlines()}
    missing = {r.id for r in RULES} - covered - REGISTRY_ONLY
    assert not missing, f"rules without a fixture directory: {sorted(missing)}"


SNAPSHOT_ENV = "PROTOREG_UPDATE_SNAPSHOTS"
SNAPSHOT = "breaking.txt"


@pytest.mark.parametrize("case", CASES)
def test_fixture_text_output_matches_its_snapshot(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole text report (sentences, levels, files, summary) of each fixture, kept in
    ``<case>/breaking.txt``. After an intended change, regenerate every snapshot with
    ``PROTOREG_UPDATE_SNAPSHOTS=1 pytest tests/test_compat_fixtures.py`` and review the diff."""
    monkeypatch.chdir(FIXTURES)  # relative paths: the report names files, never this machine's
    against = [f"{case}/history"] if (FIXTURES / case / "history").is_dir() else []
    against.append(f"{case}/before")
    args = ["breaking", f"{case}/after", *(a for path in against for a in ("--against", path))]
    result = CliRunner().invoke(main, args)
    assert result.exit_code in (0, 100), result.output
    snapshot = FIXTURES / case / SNAPSHOT
    if os.environ.get(SNAPSHOT_ENV) == "1":
        snapshot.write_text(result.stdout, encoding="utf-8")
    assert snapshot.exists(), f"no snapshot for {case}; create it with {SNAPSHOT_ENV}=1"
    assert result.stdout == snapshot.read_text(encoding="utf-8"), (
        f"the report of {case} changed; if that is intended, run {SNAPSHOT_ENV}=1 pytest {__file__} "
        "and review the diff"
    )
