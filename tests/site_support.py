"""A registry whose history has every kind of change the field ledger shows, for the site tests.

``loan_model`` goes through six releases (the checker asks for a major bump for most changes):

- 1.0.0: ``PredictRequest{age int64, name string, tier Tier, count int64, tags [string]}``,
  ``PredictResponse{score double, label string}``, ``Tier{GOLD, SILVER}``;
- 1.1.0: ``note`` added, ``BRONZE`` added to ``Tier``;
- 2.0.0: ``name`` renamed to ``full_name`` (keeps its number);
- 3.0.0: ``age`` changes type ``int64`` -> ``string`` (a fresh number; the old one reserved),
  ``label`` removed from the response, ``SILVER`` removed from ``Tier``;
- 4.0.0: ``count`` changes type ``int64`` -> ``uint64`` (wire-compatible: keeps its number);
- 4.0.1: nothing changes but the version.

``iris_model``, the seed model, is registered beside it. Everything goes through the real CLI.
"""

from __future__ import annotations

import enum
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from pydantic import BaseModel, Field

from protoreg.cli import main
from tests.conftest import make_model

MODULE = "site_test_models"
VERSIONS = ("1.0.0", "1.1.0", "2.0.0", "3.0.0", "4.0.0", "4.0.1")


def _tier(*values: str) -> type[enum.Enum]:
    """The enum ``Tier`` (one name in every release, so the registry sees one enum change)."""
    return enum.Enum("Tier", {v: v for v in values}, type=str)  # type: ignore[return-value]


Tier1 = _tier("gold", "silver")
Tier2 = _tier("gold", "silver", "bronze")
Tier3 = _tier("gold", "bronze")


class In1(BaseModel):
    age: int = Field(description="Age in years.")
    name: str
    tier: Tier1  # type: ignore[valid-type]
    count: int
    tags: list[str] = []


class In1b(BaseModel):
    age: int = Field(description="Age in years.")
    name: str
    tier: Tier2  # type: ignore[valid-type]
    count: int
    tags: list[str] = []
    note: str | None = None


class In2(BaseModel):
    age: int = Field(description="Age in years.")
    full_name: str = Field(json_schema_extra={"protoreg": {"renamed_from": "name"}})
    tier: Tier2  # type: ignore[valid-type]
    count: int
    tags: list[str] = []
    note: str | None = None


class In3(BaseModel):
    age: str = Field(description="Age, as written on the form.")
    full_name: str
    tier: Tier3  # type: ignore[valid-type]
    count: int
    tags: list[str] = []
    note: str | None = None


class In4(BaseModel):
    age: str = Field(description="Age, as written on the form.")
    full_name: str
    tier: Tier3  # type: ignore[valid-type]
    count: int = Field(json_schema_extra={"protoreg": {"type": "uint64"}})
    tags: list[str] = []
    note: str | None = None


class Out1(BaseModel):
    score: float
    label: str


class Out2(BaseModel):
    score: float


def _score(data: Any) -> float:
    """What every release answers: the number of tags plus the last digit of ``count``."""
    return float(len(data.tags) + data.count % 10)


def _predict(response: type[BaseModel]) -> Any:
    if response is Out1:
        return lambda data: Out1(score=_score(data), label=str(data.tier.value))
    return lambda data: Out2(score=_score(data))


def models_module() -> types.ModuleType:
    module = types.ModuleType(MODULE)
    plan = [(In1, Out1), (In1b, Out1), (In2, Out1), (In3, Out2), (In4, Out2), (In4, Out2)]
    for version, (request, response) in zip(VERSIONS, plan, strict=True):
        setattr(module, "V" + version.replace(".", "_"),
                make_model("loan_model", version, request, response, predict=_predict(response)))
    return module


SERVED_MODULE = f'''"""The classes of {MODULE}, for a `protoreg serve` subprocess (it imports them by name)."""

from tests.site_support import models_module

globals().update({{name: value for name, value in vars(models_module()).items() if name.startswith("V")}})
'''


def write_models_module(directory: Path) -> Path:
    """``site_test_models.py`` in ``directory``, so a server process can serve its classes."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{MODULE}.py").write_text(SERVED_MODULE)
    return directory


def invoke(db: str, protos: Path, *args: str) -> click.testing.Result:
    return CliRunner().invoke(main, ["--db", db, "--protos", str(protos), *args], catch_exceptions=False)


@pytest.fixture
def site_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The URL of a SQLite registry holding ``loan_model`` (six releases) and ``iris_model``."""
    monkeypatch.setitem(sys.modules, MODULE, models_module())
    db = f"sqlite:///{tmp_path / 'site-registry.db'}"
    protos = tmp_path / "protos"
    for version in VERSIONS:
        result = invoke(db, protos, "register", f"{MODULE}:V{version.replace('.', '_')}")
        assert result.exit_code == 0, result.output
    assert invoke(db, protos, "register", "iris_model").exit_code == 0
    yield db
