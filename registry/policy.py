"""A project's policy, ``[tool.protoreg]`` in ``pyproject.toml``, and applying it to reports.

The nearest ``pyproject.toml`` with a ``[tool.protoreg]`` table, from the current directory up,
holds the policy (none found: the defaults). Keys:

* ``db``: the registry when neither ``--db`` nor ``$PROTOREG_DB`` is given (a text-form
  directory relative to the ``pyproject.toml``, or a database URL);
* ``models``: the MODEL_REFs that ``check --all`` and ``register --all`` cover (default: every
  ``protoreg.models`` entry point);
* ``gate-categories``: the categories whose findings gate (default: all four); a finding of
  another category is reported as a warning that counts for nothing (a team whose clients never
  use JSON may leave out ``WIRE_JSON``);
* ``exceptions``: a list of tables ``{rule, reason, model?, path?}``: findings of ``rule`` (of
  ``model``, at ``path`` or below it) do not gate. ``reason`` is required, and every report
  prints the exceptions that apply to it with their reasons;
* ``protovalidate``: ``true`` renders each field's constraints as protovalidate (``buf.validate``)
  rules too, and ships ``buf/validate/validate.proto`` in ``proto_versions/`` (default ``false``).

A key protoreg does not know is an error naming the known ones, so a typo never turns a gate
off. The version rules (``VERSION_NOT_BUMPED``, ``VERSION_WENT_BACKWARDS``) always gate.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .compat.findings import CATEGORIES, Finding, Report, Waiver, max_bump
from .errors import UsageError
from .versioning import bump_rank

PYPROJECT = "pyproject.toml"
TABLE = "[tool.protoreg]"
KEYS = ("db", "models", "gate-categories", "exceptions", "protovalidate")
EXCEPTION_KEYS = ("rule", "reason", "model", "path")
ALWAYS_GATE = frozenset({"VERSION_NOT_BUMPED", "VERSION_WENT_BACKWARDS"})
"""Rules about the version itself: no policy may waive them."""


class PolicyError(UsageError):
    """``[tool.protoreg]`` holds something protoreg does not understand (exit code 2)."""


@dataclass(frozen=True)
class RuleException:
    rule: str
    reason: str
    model: str | None = None
    path: str | None = None

    def applies_to(self, model: str) -> bool:
        return self.model is None or self.model == model

    def covers(self, finding: Finding, model: str) -> bool:
        if finding.rule != self.rule or not self.applies_to(model):
            return False
        return self.path is None or finding.path == self.path or finding.path.startswith(f"{self.path}.")


@dataclass(frozen=True)
class Policy:
    source: Path | None = None
    db: str | None = None
    models: tuple[str, ...] | None = None
    gate_categories: frozenset[str] = frozenset(CATEGORIES)
    exceptions: tuple[RuleException, ...] = ()
    protovalidate: bool = False

    def apply(self, report: Report) -> Report:
        """``report`` with the findings this policy does not gate waived, its verdict recomputed
        from the rest, and the exceptions that apply to its model listed."""
        findings: list[Finding] = []
        matched = dict.fromkeys(self.exceptions, 0)
        for f in report.findings:
            waived = ""
            if f.rule not in ALWAYS_GATE:
                if f.category not in self.gate_categories:
                    waived = f"category {f.category} does not gate (gate-categories in {TABLE})"
                else:
                    cover = next((e for e in self.exceptions if e.covers(f, report.model)), None)
                    if cover is not None:
                        matched[cover] += 1
                        waived = f"exception for {f.rule} in {TABLE}: {cover.reason}"
            findings.append(replace(f, waived=waived, level="warning") if waived else f)
        required = max_bump([f.required_bump for f in findings if not f.waived])
        passed = not report.went_backwards and bump_rank(report.declared_bump) >= bump_rank(required)
        waivers = tuple(Waiver(e.rule, e.reason, e.model, e.path, matched[e])
                        for e in self.exceptions if e.applies_to(report.model))
        return replace(report, findings=tuple(findings), required_bump=required, passed=passed, waivers=waivers)

    def apply_all(self, reports: Iterable[Report]) -> list[Report]:
        return [self.apply(r) for r in reports]


def find_pyproject(start: Path) -> Path | None:
    """The nearest ``pyproject.toml`` with a ``[tool.protoreg]`` table, from ``start`` up."""
    for directory in (start, *start.parents):
        candidate = directory / PYPROJECT
        if candidate.is_file():
            try:
                data = tomllib.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
                # It may hold the policy: going on without it could turn a gate off.
                raise PolicyError(f"{candidate} cannot be read as TOML ({error}); fix it") from error
            if "protoreg" in data.get("tool", {}):
                return candidate
    return None


def load_policy(start: Path | None = None) -> Policy:
    """The policy of the project around ``start`` (the current directory); defaults without one."""
    path = find_pyproject((start or Path.cwd()).resolve())
    if path is None:
        return Policy()
    table = tomllib.loads(path.read_text(encoding="utf-8"))["tool"]["protoreg"]
    return parse_policy(table, path)


def _unknown(key: str, known: Iterable[str], where: str) -> PolicyError:
    known = list(known)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    return PolicyError(f'Unknown key "{key}" in {where}{hint}; the known keys are {", ".join(known)}')


def parse_policy(table: Mapping[str, Any], path: Path) -> Policy:
    """Validate a ``[tool.protoreg]`` table read from ``path``."""
    where = f"{TABLE} of {path}"
    if not isinstance(table, Mapping):
        raise PolicyError(f"{where} must be a table of keys ({', '.join(KEYS)})")
    for key in table:
        if key not in KEYS:
            raise _unknown(key, KEYS, where)
    db = table.get("db")
    if db is not None and (not isinstance(db, str) or not db):
        raise PolicyError(f'"db" in {where} must be a path or a database URL, not {db!r}')
    if db is not None and "://" not in db:
        db = str(path.parent / db)
    models = table.get("models")
    if models is not None and (not isinstance(models, list) or not all(isinstance(m, str) and m for m in models)):
        raise PolicyError(f'"models" in {where} must be a list of MODEL_REFs (module:Class or entry-point names)')
    categories = table.get("gate-categories", list(CATEGORIES))
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise PolicyError(f'"gate-categories" in {where} must be a list of categories ({", ".join(CATEGORIES)})')
    for category in categories:
        if category not in CATEGORIES:
            raise PolicyError(f'Unknown category "{category}" in "gate-categories" of {where}; the categories are '
                              f"{', '.join(CATEGORIES)}")
    protovalidate = table.get("protovalidate", False)
    if not isinstance(protovalidate, bool):
        raise PolicyError(f'"protovalidate" in {where} must be true or false, not {protovalidate!r}')
    return Policy(
        source=path,
        protovalidate=protovalidate,
        db=db,
        models=None if models is None else tuple(models),
        gate_categories=frozenset(categories),
        exceptions=tuple(_exception(item, i, where) for i, item in enumerate(table.get("exceptions", []))),
    )


def _exception(item: Any, index: int, where: str) -> RuleException:
    from .compat.rules import RULES_BY_ID

    here = f"exceptions[{index}] of {where}"
    if not isinstance(item, Mapping):
        raise PolicyError(f"{here} must be a table with rule and reason (and optionally model and path)")
    for key in item:
        if key not in EXCEPTION_KEYS:
            raise _unknown(key, EXCEPTION_KEYS, here)
    rule, reason = item.get("rule"), item.get("reason")
    if not isinstance(rule, str) or rule not in RULES_BY_ID:
        close = difflib.get_close_matches(str(rule), list(RULES_BY_ID), n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        raise PolicyError(f'{here} names rule {rule!r}, which is not a rule{hint}; `protoreg rules` lists them')
    if rule in ALWAYS_GATE:
        raise PolicyError(f"{here} names {rule}, which always gates: a release's version must go forward")
    if not isinstance(reason, str) or not reason.strip():
        raise PolicyError(f'{here} has no reason; say why {rule} may pass, e.g. reason = "no client reads it"')
    for key in ("model", "path"):
        if key in item and (not isinstance(item[key], str) or not item[key]):
            raise PolicyError(f'"{key}" in {here} must be a non-empty string')
    return RuleException(rule, reason.strip(), item.get("model"), item.get("path"))
