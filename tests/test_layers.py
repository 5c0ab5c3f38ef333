"""The direction of the arrows in DESIGN.md: ``registry`` never imports ``service``; only the
``protoreg`` command (``protoreg/cli.py``) knows both."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_registry_never_imports_service() -> None:
    # Names from the imported packages, so the check follows wherever they are installed.
    from protoreg import registry, service

    code = (
        "import importlib, pkgutil, sys\n"
        f"import {registry.__name__} as package\n"
        f"for info in pkgutil.walk_packages(package.__path__, '{registry.__name__}.'):\n"
        "    importlib.import_module(info.name)\n"
        f"print(sorted(m for m in sys.modules if m == '{service.__name__}' or m.startswith('{service.__name__}.')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert result.stdout.strip() == "[]"


def test_every_command_is_wired_in_one_place() -> None:
    """A command defined in any ``commands`` module of registry/ or service/ is reachable from
    ``protoreg`` (a new commands module is found too)."""
    import importlib
    import pkgutil

    import click

    from protoreg import registry, service
    from protoreg.cli import main

    defined: set[click.Command] = set()
    for package in (registry, service):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if info.name.rsplit(".", 1)[-1] != "commands":
                continue
            module = importlib.import_module(info.name)
            defined |= {
                obj for obj in vars(module).values()
                if isinstance(obj, click.Command) and getattr(obj.callback, "__module__", None) == info.name
            }
    assert len(defined) >= 11
    assert defined == set(main.commands.values())
