"""The benchmark harness in its smoke mode, so ``make bench`` cannot rot unnoticed.

Tiny sizes and fractions of a second per measurement: this checks that every section runs end
to end (servers start and answer the same bytes, both checkers run, registries build) and that
results.md and results.json are written with every section and target. It asserts no speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_make_bench_runs_end_to_end_in_smoke_mode(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--rounds", "1", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["mode"] == "smoke"
    assert data["machine"]["cores"] >= 1 and data["machine"]["python"]
    sections = {s["section"]: s for s in data["sections"]}
    assert set(sections) == {"registry", "breaking", "check", "serving", "startup"}
    for section in sections.values():
        assert section["rows"], f"{section['section']} measured nothing"
    serving = sections["serving"]
    measured = {(m["target"], m["mode"]) for m in serving["measurements"]}
    assert {("protoreg", "unary"), ("protoreg", "stream"), ("protoreg-null", "unary"), ("seed-style", "unary"),
            ("floor", "unary"), ("floor-aio", "unary"), ("original", "unary"), ("protoreg-8ch", "unary"),
            ("protoreg-2proc", "unary")} <= measured
    assert serving["soak"]["calls"] > 0 and serving["soak"]["rss_before_kib"] > 0
    assert all(m["errors"] == 0 and m["calls"] > 0 for m in serving["measurements"])
    checks = [row for row in sections["check"]["rows"] if "exit" in row]
    assert checks and all(row["exit"] == 0 for row in checks)
    breaking = [row for row in sections["breaking"]["rows"] if row["tool"] == "protoreg"]
    assert breaking and all(row["exit"] == 100 for row in breaking)  # the mutations break clients
    targets = [t for s in data["sections"] for t in s["targets"]]
    assert all({"name", "value", "target", "met"} <= set(t) for t in targets)
    markdown = (tmp_path / "results.md").read_text()
    assert "## Targets" in markdown and "## Serving" in markdown and "## Machine" in markdown


def test_smoke_mode_refuses_unknown_sections(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--only", "nonsense", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown sections" in result.stderr
    assert not (tmp_path / "results.json").exists()
