"""Findings and reports: what the compatibility checker returns, and its three output formats.

A :class:`Finding` is one rule hit: one sentence naming the subject and both values, with the
rule, category, direction, location and the bump it requires. A :class:`Report` is the verdict
for one model release (or one pair of proto trees): the declared bump against the required one.
This module formats reports as ``text``, ``json`` or ``github`` workflow annotations; it never
prints.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..versioning import BUMP_ORDER, Bump, bump_rank

Category = Literal["WIRE", "WIRE_JSON", "SOURCE", "SEMANTIC"]
CATEGORIES: tuple[Category, ...] = ("WIRE", "WIRE_JSON", "SOURCE", "SEMANTIC")
Direction = Literal["request", "response", "both"]
Level = Literal["error", "warning", "info"]
FORMATS = ("text", "json", "github")


def max_bump(bumps: Sequence[Bump]) -> Bump:
    """The biggest of ``bumps`` (``none`` for an empty sequence)."""
    return max(bumps, key=bump_rank, default="none")


@dataclass(frozen=True)
class Finding:
    """One rule hit. ``message`` is a whole sentence; ``file`` is where an annotation points."""

    rule: str
    category: Category
    direction: Direction
    path: str
    message: str
    before: str | None
    after: str | None
    required_bump: Bump
    level: Level = "info"
    file: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "category": self.category,
            "direction": self.direction,
            "path": self.path,
            "message": self.message,
            "before": self.before,
            "after": self.after,
            "required_bump": self.required_bump,
            "level": self.level,
        }


@dataclass(frozen=True)
class Report:
    """The verdict for one release (``model``) or one pair of proto trees.

    ``declared_version`` is ``None`` for ``protoreg breaking``, where the declared bump is
    "compatible" (``minor``): any finding that needs a major bump fails it.
    """

    model: str
    declared_version: str | None
    baseline_version: str | None
    declared_bump: Bump
    required_bump: Bump
    passed: bool
    findings: tuple[Finding, ...] = ()
    note: str = ""
    went_backwards: bool = field(default=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "declared_version": self.declared_version,
            "baseline_version": self.baseline_version,
            "declared_bump": self.declared_bump,
            "required_bump": self.required_bump,
            "passed": self.passed,
            "findings": [f.to_dict() for f in self.findings],
        }

    def counts(self) -> dict[Bump, int]:
        return {b: sum(1 for f in self.findings if f.required_bump == b) for b in reversed(BUMP_ORDER)}

    def summary(self) -> str:
        """The one-line verdict that ends the text report."""
        counts = self.counts()
        parts = [f"{n} {b}" for b, n in counts.items() if n and b != "none"]
        tally = f"{', '.join(parts)} findings" if parts else "no findings"
        subject = f"{self.model} {self.declared_version}" if self.declared_version else self.model
        if self.declared_version is None:  # protoreg breaking: no versions, only compatibility
            verdict = "is compatible with" if self.passed else "breaks clients of"
            return f"{self.model} {verdict} {self.baseline_version}: {tally}"
        if self.went_backwards:
            return f"{subject} goes backwards from {self.baseline_version}: {tally}"
        if self.passed:
            if self.baseline_version is None and self.declared_version is not None:
                return f"{subject} passed (first release, nothing to compare): {tally}"
            against = f" against {self.baseline_version}" if self.baseline_version else ""
            return f"{subject} passed{against} ({_bump_words(self.required_bump)} needed): {tally}"
        return f"{subject} needs {_bump_advice(self.required_bump, self.declared_version or '')}: {tally}"


def _bump_words(bump: Bump) -> str:
    return "no bump" if bump == "none" else f"a {bump} bump"


def _bump_advice(required: Bump, declared_version: str) -> str:
    zero = declared_version.startswith("0.")
    if zero:  # Cargo's reading of 0.x: the minor number is the breaking one
        word = {"major": "minor", "minor": "patch", "patch": "patch", "none": "patch"}[required]
        return f"a new {word} version (0.x: a {word} bump may carry {required}-sized changes)"
    return f"a new {required} version"


# -- formatting --------------------------------------------------------------------------


def format_text(reports: Sequence[Report]) -> str:
    lines: list[str] = []
    for report in reports:
        if report.note:
            lines.append(report.note)
        for f in report.findings:
            where = f"{f.file}: " if f.file else ""
            lines.append(f"{where}{f.level}: {f.message} [{f.rule}, {f.category}, {f.direction}, {f.required_bump}]")
        lines.append(report.summary())
    return "\n".join(lines)


def format_json(reports: Sequence[Report]) -> str:
    data: Any = [r.to_dict() for r in reports]
    if len(reports) == 1:
        data = data[0]
    return json.dumps(data, indent=2)


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


_GITHUB_COMMAND = {"error": "error", "warning": "warning", "info": "notice"}


def format_github(reports: Sequence[Report]) -> str:
    """GitHub Actions workflow commands: one annotation per finding, then the summaries."""
    lines: list[str] = []
    for report in reports:
        for f in report.findings:
            props = []
            if f.file:
                props.append(f"file={_escape_property(f.file)}")
            props.append(f"title={_escape_property(f.rule)}")
            lines.append(f"::{_GITHUB_COMMAND[f.level]} {','.join(props)}::{_escape_data(f.message)}")
        command = "notice" if report.passed else "error"
        lines.append(f"::{command} title=protoreg::{_escape_data(report.summary())}")
    return "\n".join(lines)


def format_reports(reports: Sequence[Report], fmt: str) -> str:
    if fmt == "json":
        return format_json(reports)
    if fmt == "github":
        return format_github(reports)
    return format_text(reports)
