"""Annotations that point where the fix is: ``breaking`` findings carry the ``.proto`` line from
protoc's source info, and ``--format junit`` is JUnit XML that CI systems read."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

from click.testing import CliRunner

from protoreg.cli import main

OLD = """syntax = "proto3";
package acme.v1;

message Order {
  string id = 1;
  int64 qty = 2;
  string note = 3;
}
"""
NEW = """syntax = "proto3";
package acme.v1;

// An order, now with a comment above it.
message Order {
  string id = 1;

  string qty = 2;
}
"""


def _trees(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    (tmp_path / "old" / "order.proto").write_text(OLD)
    (tmp_path / "new" / "order.proto").write_text(NEW)
    return tmp_path / "old", tmp_path / "new"


def test_breaking_annotations_carry_the_proto_line(tmp_path: Path) -> None:
    old, new = _trees(tmp_path)
    result = CliRunner().invoke(main, ["breaking", str(new), "--against", str(old), "--format", "github"])
    assert result.exit_code == 100, result.output
    file = f"{new}/order.proto".replace(":", "%3A")
    # The changed field's own line; the removed field's message line (it is gone from the file).
    assert f"::error file={file},line=8,title=FIELD_TYPE_CHANGED_INCOMPATIBLE::" in result.output
    assert f"::error file={file},line=5,title=FIELD_REMOVED::" in result.output


def test_junit_is_a_test_report(tmp_path: Path) -> None:
    old, new = _trees(tmp_path)
    result = CliRunner().invoke(main, ["breaking", str(new), "--against", str(old), "--format", "junit"])
    assert result.exit_code == 100
    root = ElementTree.fromstring(result.output)
    suite = root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    failures = [c for c in cases if c.find("failure") is not None]
    assert root.get("tests") == str(len(cases)) and root.get("failures") == str(len(failures))
    changed = next(c for c in cases if c.get("name") == "FIELD_TYPE_CHANGED_INCOMPATIBLE acme.v1.Order.qty")
    assert (changed.get("file"), changed.get("line")) == (f"{new}/order.proto", "8")
    verdict = cases[-1]
    assert verdict.get("name") == "verdict"
    assert verdict.find("failure").get("message") == f"{new} breaks clients of {old}: 4 major findings"  # type: ignore[union-attr]
    same = CliRunner().invoke(main, ["breaking", str(old), "--against", str(old), "--format", "junit"])
    assert same.exit_code == 0
    assert ElementTree.fromstring(same.output).get("failures") == "0"
