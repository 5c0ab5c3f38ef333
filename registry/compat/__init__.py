"""The compatibility checker: rules over the IR, the engine that pairs snapshots, the reports.

``check_release`` checks a model release against its whole registry history; ``check_trees``
compares two trees of ``.proto`` files (``protoreg breaking``). See ``docs/rules.md``.
"""

from __future__ import annotations

from .engine import check_release, check_trees, compare
from .findings import Finding, Report, format_reports
from .rules import HANDLERS, RULES, Rule

__all__ = [
    "HANDLERS",
    "RULES",
    "Finding",
    "Report",
    "Rule",
    "check_release",
    "check_trees",
    "compare",
    "format_reports",
]
