"""Findings and reports: what the compatibility checker returns, and its output formats.

A :class:`Finding` is one rule hit: one sentence naming the subject and both values, with the
rule, category, direction, location (a file and, where known, a line: the model's ``.py`` for
``check``, the ``.proto`` for ``breaking``) and the bump it requires. A :class:`Report` is the
verdict for one model release (or one pair of proto trees): the declared bump against the
required one. A finding that ``[tool.protoreg]`` says does not gate (its category does not gate,
or a rule exception covers it) carries the reason in ``waived`` and counts for nothing; every
report lists the exceptions that apply to it (:class:`Waiver`). This module formats reports as
``text``, ``json``, ``github`` workflow annotations or ``junit`` XML; it never prints.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from xml.etree import ElementTree

from ..versioning import BUMP_ORDER, Bump, bump_rank

Category = Literal["WIRE", "WIRE_JSON", "SOURCE", "SEMANTIC"]
CATEGORIES: tuple[Category, ...] = ("WIRE", "WIRE_JSON", "SOURCE", "SEMANTIC")
Direction = Literal["request", "response", "both"]
Level = Literal["error", "warning", "info"]
FORMATS = ("text", "json", "github", "junit")


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
    line: int | None = None
    waived: str = ""
    """Why this finding does not gate ([tool.protoreg]); empty when it does."""

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
            "file": self.file or None,
            "line": self.line,
            "waived": self.waived or None,
        }

    @property
    def where(self) -> str:
        """``file:line`` (or ``file``, or nothing) for text output."""
        if not self.file:
            return ""
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True)
class Waiver:
    """A rule exception of ``[tool.protoreg]`` as a report lists it: every report names the
    exceptions that apply to its model, with their reasons, and how many findings each covered."""

    rule: str
    reason: str
    model: str | None = None
    path: str | None = None
    matched: int = 0

    def describe(self) -> str:
        scope = "".join([f" for {self.model}" if self.model else "", f" at {self.path}" if self.path else ""])
        return f"exception {self.rule}{scope} ([tool.protoreg]): {self.reason} (covers {self.matched} findings here)"

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "model": self.model, "path": self.path, "reason": self.reason,
                "matched": self.matched}


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
    waivers: tuple[Waiver, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "declared_version": self.declared_version,
            "baseline_version": self.baseline_version,
            "declared_bump": self.declared_bump,
            "required_bump": self.required_bump,
            "passed": self.passed,
            "findings": [f.to_dict() for f in self.findings],
            "exceptions": [w.to_dict() for w in self.waivers],
        }

    def counts(self) -> dict[Bump, int]:
        """How many gating findings need each bump (waived findings count for nothing)."""
        return {b: sum(1 for f in self.findings if f.required_bump == b and not f.waived)
                for b in reversed(BUMP_ORDER)}

    def summary(self) -> str:
        """The one-line verdict that ends the text report."""
        counts = self.counts()
        parts = [f"{n} {b}" for b, n in counts.items() if n and b != "none"]
        tally = f"{', '.join(parts)} findings" if parts else "no findings"
        waived = sum(1 for f in self.findings if f.waived)
        if waived:
            tally += f" ({waived} more that do not gate, see [tool.protoreg])"
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
        lines += [waiver.describe() for waiver in report.waivers]
        for f in report.findings:
            where = f"{f.where}: " if f.where else ""
            waived = f" (does not gate: {f.waived})" if f.waived else ""
            lines.append(f"{where}{f.level}: {f.message} [{f.rule}, {f.category}, {f.direction}, "
                         f"{f.required_bump}]{waived}")
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
        for waiver in report.waivers:
            lines.append(f"::notice title={_escape_property(f'protoreg exception {waiver.rule}')}::"
                         f"{_escape_data(waiver.describe())}")
        for f in report.findings:
            props = []
            if f.file:
                props.append(f"file={_escape_property(f.file)}")
                if f.line:
                    props.append(f"line={f.line}")
            props.append(f"title={_escape_property(f.rule)}")
            message = f"{f.message} (does not gate: {f.waived})" if f.waived else f.message
            lines.append(f"::{_GITHUB_COMMAND[f.level]} {','.join(props)}::{_escape_data(message)}")
        command = "notice" if report.passed else "error"
        lines.append(f"::{command} title=protoreg::{_escape_data(report.summary())}")
    return "\n".join(lines)


def format_junit(reports: Sequence[Report]) -> str:
    """JUnit XML, as CI systems render test reports: a test suite per report, a test case per
    finding (failed when it is an error, skipped when it does not gate) and one for the verdict."""
    root = ElementTree.Element("testsuites", name="protoreg")
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for report in reports:
        subject = f"{report.model} {report.declared_version}" if report.declared_version else report.model
        suite = ElementTree.SubElement(root, "testsuite", name=subject)
        counts = {"tests": 0, "failures": 0, "skipped": 0}
        if report.waivers:
            properties = ElementTree.SubElement(suite, "properties")
            for waiver in report.waivers:
                ElementTree.SubElement(properties, "property", name=f"exception {waiver.rule}", value=waiver.describe())
        for f in report.findings:
            case = ElementTree.SubElement(suite, "testcase", classname=report.model, name=f"{f.rule} {f.path}")
            if f.file:
                case.set("file", f.file)
                if f.line:
                    case.set("line", str(f.line))
            text = f"{f.where + ': ' if f.where else ''}{f.message} [{f.rule}, {f.category}, {f.direction}, " \
                   f"{f.required_bump}]"
            counts["tests"] += 1
            if f.waived:
                ElementTree.SubElement(case, "skipped", message=f"does not gate: {f.waived}").text = text
                counts["skipped"] += 1
            elif f.level == "error":
                ElementTree.SubElement(case, "failure", type=f.rule, message=f.message).text = text
                counts["failures"] += 1
            else:
                ElementTree.SubElement(case, "system-out").text = text
        verdict = ElementTree.SubElement(suite, "testcase", classname=report.model, name="verdict")
        counts["tests"] += 1
        if not report.passed:
            ElementTree.SubElement(verdict, "failure", type="verdict", message=report.summary()).text = report.summary()
            counts["failures"] += 1
        else:
            ElementTree.SubElement(verdict, "system-out").text = report.summary()
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        suite.set("errors", "0")
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("errors", "0")
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root, encoding="unicode")


def format_reports(reports: Sequence[Report], fmt: str) -> str:
    if fmt == "json":
        return format_json(reports)
    if fmt == "github":
        return format_github(reports)
    if fmt == "junit":
        return format_junit(reports)
    return format_text(reports)
