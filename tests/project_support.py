"""A model project on disk for CLI tests: real ``.py`` files imported by ``module:Class`` from the
current directory (as a user's CI runs them), a ``pyproject.toml`` and, where asked, git."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from protoreg.cli import main

PROTOREG = str(Path(sys.executable).with_name("protoreg"))


def shop_source(version: str, *, outputs: str = "score: float\n    label: str",
                inputs: str = "age: int\n    name: str", extra: str = "") -> str:
    """``shop/models.py``: ``ShopModel`` at ``version``; ``outputs``/``inputs`` are class bodies."""
    return f'''from pydantic import BaseModel, Field  # noqa: F401
{extra}

class ShopInput(BaseModel):
    {inputs}


class ShopOutput(BaseModel):
    {outputs}


class ShopModel:
    qualified_name = "shop_model"
    display_name = "Shop"
    description = "Scores a shop."
    version = "{version}"
    input_schema = ShopInput
    output_schema = ShopOutput

    def predict(self, data):
        return ShopOutput(score=1.0)
'''


class Project:
    """A project directory that is the current directory for the test."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, path: str, text: str) -> Path:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        # A module rewritten in the same second must be imported afresh (the next CLI call).
        for name in [n for n, m in sys.modules.items() if getattr(m, "__file__", None) == str(target)]:
            del sys.modules[name]
        return target

    def model(self, version: str, **parts: str) -> Path:
        (self.root / "shop").mkdir(exist_ok=True)
        self.write("shop/__init__.py", "")
        return self.write("shop/models.py", shop_source(version, **parts))

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(main, list(args))

    def run(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """``protoreg ARGS`` in a real process, without PYTHONPATH, as CI runs it."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PROTOREG_DB")}
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return subprocess.run([PROTOREG, *args], cwd=self.root, env=env, capture_output=True, text=True,
                              check=check)

    def git(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
        return subprocess.run(["git", *args], cwd=self.root, env=env, capture_output=True, text=True, check=False)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.delenv("PROTOREG_DB", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the loader puts the current directory on it
    # A model file rewritten within one second at the same size must not come back from a stale .pyc.
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    before = set(sys.modules)
    yield Project(root)
    for name in set(sys.modules) - before:
        if str(getattr(sys.modules[name], "__file__", "") or "").startswith(str(tmp_path)):
            del sys.modules[name]
