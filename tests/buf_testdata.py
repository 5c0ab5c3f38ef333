"""Differential runner: ``protoreg breaking`` against ``buf breaking`` on buf's own breaking testdata.

buf keeps a curated before/after pair per breaking rule in its repository
(``private/bufpkg/bufcheck/testdata/breaking/{previous,current}/<case>``). Given the path of a
local checkout, this runs both tools on every case under the WIRE and the WIRE_JSON category and
reports, case by case, whether their pass/fail verdicts agree. Nothing is copied from the
checkout; it is only read.

buf runs the way its own tests run a case (``breaking_test.go``): the current directory is the
input and the previous one the baseline, each laid out by its own ``buf.yaml`` (module roots),
imports excluded. Only the rule selection changes: the case's configuration (its rules,
``except``, ``ignore``, ``ignore_unstable_packages``, plugins and policies) is replaced by a v2
configuration with ``use: [CATEGORY]`` and the same module roots, because the question is whether
the two checkers agree on a category, and protoreg has no counterpart of buf's per-rule
selections. protoreg reads the same files from the same module roots (asked of ``buf ls-files``)
with its own descriptor reader.

    python -m tests.buf_testdata PATH_TO_BUF_CHECKOUT            # a table of every case
    python -m tests.buf_testdata PATH --case breaking_enum_same_type --format json

Exit 0 when every verdict agrees or is a difference listed in docs/compat.md (``DIFFERENCES``,
``EXCLUDED``), 1 otherwise, 2 on a usage error. ``tests/test_compat_buf_testdata.py`` runs it when
``PROTOREG_BUF_REPO`` names a checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from protoreg.registry import ir
from protoreg.registry.compat.descriptors import load_tree
from protoreg.registry.compat.engine import check_trees
from protoreg.registry.errors import ProtoregError
from protoreg.registry.protoc import proto_files

BUF_VERSION = "1.75.0"
REPO_ENV = "PROTOREG_BUF_REPO"
TESTDATA = Path("private/bufpkg/bufcheck/testdata/breaking")
CATEGORIES = ("WIRE", "WIRE_JSON")

# Cases not compared, and why; docs/compat.md lists each (a test keeps the two in step).
EXCLUDED: dict[str, str] = {}

# Verdicts that differ on purpose, (case, category) -> why; docs/compat.md lists each case.
DIFFERENCES: dict[tuple[str, str], str] = {}


def buf_binary(install: bool = True) -> Path | None:
    """buf from the npm registry, in the cache directory ``.ci/run`` installs it into.

    Installed there when missing and ``install`` is set; ``None`` where npm is missing.
    """
    cache = Path(os.environ.get("PROTOREG_BUF_CACHE", Path.home() / ".cache" / "protoreg-buf"))
    binary = cache / "node_modules" / ".bin" / "buf"
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None or not install:
        return None
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [npm, "install", "--prefix", str(cache), "--no-audit", "--no-fund", f"@bufbuild/buf@{BUF_VERSION}"],
        check=True,
        capture_output=True,
        text=True,
    )
    return binary


@dataclass(frozen=True)
class Verdict:
    """Both tools' verdicts on one case under one category.

    ``status`` is ``agree``, ``differ`` (a disagreement nobody explained), ``deliberate`` (a
    difference listed in docs/compat.md), ``excluded`` (not compared) or ``error`` (a tool could
    not run; ``note`` says why).
    """

    case: str
    category: str
    status: str
    buf_passed: bool | None = None
    protoreg_passed: bool | None = None
    buf_rules: tuple[str, ...] = ()
    protoreg_rules: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Run:
    commit: str
    buf_version: str
    verdicts: tuple[Verdict, ...]

    def count(self, status: str) -> int:
        return sum(1 for v in self.verdicts if v.status == status)

    @property
    def compared(self) -> int:
        return sum(1 for v in self.verdicts if v.status in ("agree", "differ", "deliberate"))

    @property
    def ok(self) -> bool:
        return self.count("differ") == 0 and self.count("error") == 0

    def summary(self) -> str:
        return (
            f"buf {self.buf_version} at bufbuild/buf {self.commit[:12]}: {self.compared} verdicts compared, "
            f"{self.count('agree')} agree, {self.count('deliberate')} differ deliberately, "
            f"{self.count('differ')} disagree; {self.count('excluded')} excluded, {self.count('error')} errors"
        )


def cases(checkout: Path) -> list[str]:
    """Every case of the testdata: the directories present under both ``previous/`` and ``current/``."""
    root = checkout / TESTDATA
    if not (root / "current").is_dir() or not (root / "previous").is_dir():
        raise ProtoregError(
            f'"{checkout}" has no {TESTDATA}/current and previous; pass the root of a checkout of bufbuild/buf'
        )
    current = {p.name for p in (root / "current").iterdir() if p.is_dir()}
    previous = {p.name for p in (root / "previous").iterdir() if p.is_dir()}
    return sorted(current & previous)


def commit_of(checkout: Path) -> str:
    """The checkout's git commit, or ``unknown`` for a plain copy without git metadata."""
    result = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def buf_version(buf: Path) -> str:
    return subprocess.run([str(buf), "--version"], capture_output=True, text=True, check=True).stdout.strip()


def module_roots(buf: Path, directory: Path) -> dict[Path, list[str]]:
    """The module roots buf finds in ``directory`` (its buf.yaml's layout) -> their files."""
    result = subprocess.run(
        [str(buf), "ls-files", ".", "--format", "json"], cwd=directory, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ProtoregError(f"buf ls-files failed in {directory}: {result.stderr.strip()}")
    roots: dict[Path, list[str]] = {}
    for line in result.stdout.splitlines():
        entry = json.loads(line)
        if entry.get("is_import"):
            continue
        path, import_path = entry["path"], entry["import_path"]
        root = path[: len(path) - len(import_path)].rstrip("/") or "."
        roots.setdefault(Path(root), []).append(import_path)
    return roots


def _load(directory: Path, roots: dict[Path, list[str]]) -> list[ir.Package]:
    """protoreg's reading of ``directory``: each module root read as ``protoreg breaking`` reads it."""
    packages: list[ir.Package] = []
    for root, files in sorted(roots.items()):
        if sorted(files) != proto_files(directory / root):
            raise ProtoregError(f"{directory / root} holds other .proto files than buf's module: {sorted(files)}")
        packages += load_tree(directory / root)
    return packages


def _buf_config(roots: dict[Path, list[str]], category: str) -> str:
    """The input's configuration: its module roots kept, its rules replaced by ``category``.

    Always buf's current configuration version, v2: the categories' contents depend on it (in
    v1beta1, WIRE does not check a file's package), and v2 is what buf applies today.
    """
    config: dict[str, object] = {"version": "v2", "breaking": {"use": [category]}}
    if set(roots) != {Path(".")}:
        config["modules"] = [{"path": str(root)} for root in sorted(roots)]
    return json.dumps(config)


def _buf(buf: Path, current: Path, previous: Path, config: str) -> tuple[bool, tuple[str, ...]]:
    # From inside the input, as buf's tests root each case there; module paths are relative to it.
    result = subprocess.run(
        [str(buf), "breaking", ".", "--against", str(previous.resolve()), "--config", config,
         "--exclude-imports", "--error-format", "json"],
        cwd=current,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode not in (0, 100):
        raise ProtoregError(f"buf breaking exited {result.returncode}: {(result.stderr or result.stdout).strip()}")
    rules = sorted({json.loads(line)["type"] for line in result.stdout.splitlines() if line.strip()})
    return result.returncode == 0, tuple(rules)


def run_case(buf: Path, checkout: Path, case: str) -> list[Verdict]:
    """Both tools on one case, once per category."""
    if case in EXCLUDED:
        return [Verdict(case, c, "excluded", note=EXCLUDED[case]) for c in CATEGORIES]
    current, previous = checkout / TESTDATA / "current" / case, checkout / TESTDATA / "previous" / case
    try:
        current_roots, previous_roots = module_roots(buf, current), module_roots(buf, previous)
        after, before = _load(current, current_roots), _load(previous, previous_roots)
    except ProtoregError as error:
        return [Verdict(case, c, "error", note=str(error)) for c in CATEGORIES]
    verdicts = []
    for category in CATEGORIES:
        try:
            buf_passed, buf_rules = _buf(buf, current, previous, _buf_config(current_roots, category))
        except ProtoregError as error:
            verdicts.append(Verdict(case, category, "error", note=str(error)))
            continue
        report = check_trees(before, after, categories=[category])
        ours = tuple(sorted({f.rule for f in report.findings if f.level == "error"}))
        if report.passed == buf_passed:
            status, note = "agree", ""
        elif (case, category) in DIFFERENCES:
            status, note = "deliberate", DIFFERENCES[(case, category)]
        else:
            status, note = "differ", ""
        verdicts.append(Verdict(case, category, status, buf_passed, report.passed, buf_rules, ours, note))
    return verdicts


def run(checkout: Path, buf: Path, only: Sequence[str] = ()) -> Run:
    """Every case (or those in ``only``) under every category."""
    names = cases(checkout)
    unknown = sorted(set(only) - set(names))
    if unknown:
        raise ProtoregError(f"no case named {', '.join(unknown)} in {checkout / TESTDATA}; see its current/ directory")
    verdicts = [v for case in names if not only or case in only for v in run_case(buf, checkout, case)]
    return Run(commit_of(checkout), buf_version(buf), tuple(verdicts))


def _verdict_word(passed: bool | None) -> str:
    return "-" if passed is None else ("pass" if passed else "fail")


def format_markdown(result: Run) -> str:
    """A table, one row per case and category, and the summary line."""
    lines = [
        "| case | category | buf | protoreg | status | buf's rules | protoreg's rules |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in result.verdicts:
        lines.append(
            f"| `{v.case}` | {v.category} | {_verdict_word(v.buf_passed)} | {_verdict_word(v.protoreg_passed)} "
            f"| {v.status} | {', '.join(v.buf_rules)} | {', '.join(v.protoreg_rules)} |"
        )
    lines += ["", result.summary()]
    for v in result.verdicts:
        if v.status in ("differ", "error"):
            lines.append(f"{v.status}: {v.case} {v.category}: {v.note}")
    return "\n".join(lines)


def format_json(result: Run) -> str:
    return json.dumps(
        {"commit": result.commit, "buf_version": result.buf_version, "verdicts": [asdict(v) for v in result.verdicts]},
        indent=2,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.buf_testdata",
        description="Compare protoreg breaking with buf breaking on buf's own breaking testdata (WIRE, WIRE_JSON).",
    )
    parser.add_argument("checkout", type=Path, help="the root of a local checkout of github.com/bufbuild/buf")
    parser.add_argument("--buf", type=Path, help=f"the buf binary (default: buf {BUF_VERSION} from npm, cached)")
    parser.add_argument("--case", action="append", default=[], help="only this case (repeatable)")
    parser.add_argument("--format", choices=("markdown", "json"), default="markdown")
    args = parser.parse_args(argv)
    try:
        cases(args.checkout)  # a wrong path is reported before buf is looked for or installed
        buf = args.buf or buf_binary()
        if buf is None or not buf.exists():
            parser.error(
                f"no buf binary at {buf}; pass --buf PATH to a buf {BUF_VERSION} binary"
                if buf
                else f"npm is not installed, so buf cannot be installed; pass --buf PATH to a buf {BUF_VERSION} binary"
            )
        result = run(args.checkout, buf, args.case)
    except ProtoregError as error:
        parser.error(str(error))
    print(format_json(result) if args.format == "json" else format_markdown(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
