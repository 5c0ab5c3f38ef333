"""CONTRIBUTING.md stays true to the tree: every file and folder it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_path_the_guide_names_exists() -> None:
    guide = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    paths = set(re.findall(r"`((?:registry|service|protoreg|tests|docs|benchmarks|migrations)/[\w./]*)`", guide))
    paths |= set(re.findall(r"`([A-Z]+\.md)`", guide))
    assert len(paths) > 20
    missing = sorted(p for p in paths if "<" not in p and not (ROOT / p).exists())
    assert not missing, f"CONTRIBUTING.md names paths that do not exist: {missing}"


def test_every_module_with_a_home_in_the_guide_table_exists_and_says_what_it_owns() -> None:
    guide = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    table = guide[guide.index("| what | where |"): guide.index("Before you push")]
    for path in re.findall(r"`([\w/]+\.py)`", table):
        text = (ROOT / path).read_text(encoding="utf-8")
        assert text.startswith('"""'), f"{path} has no module docstring saying what it owns"
