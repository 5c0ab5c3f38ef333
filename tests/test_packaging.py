"""How protoreg is installed: one ``protoreg`` package that a user's own packages cannot shadow.

The repository keeps ``registry/``, ``service/`` and ``migrations/`` at its top level and
``protoreg/`` links to them; the distribution installs only ``protoreg`` (``protoreg.registry``,
``protoreg.service``, ``protoreg.migrations``). A model project commonly has a ``service/`` package
of its own, first on ``sys.path`` when its code runs: these tests run protoreg beside one.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OLD_NAMES = ("registry", "service", "migrations")

USER_MODEL = '''
from pydantic import BaseModel

import service  # the project's own package, not protoreg's


class In(BaseModel):
    amount: float


class Out(BaseModel):
    label: str


class ShopModel:
    qualified_name = "shop_model"
    display_name = "Shop"
    description = f"Uses {service.OWNER}."
    version = "1.0.0"
    input_schema = In
    output_schema = Out

    def predict(self, data: In) -> Out:
        return Out(label="ok")
'''


def _user_project(root: Path) -> Path:
    """A project with its own top-level service/, registry/ and migrations/ packages."""
    project = root / "project"
    for name in OLD_NAMES:
        (project / name).mkdir(parents=True)
        (project / name / "__init__.py").write_text(f'OWNER = "the user\'s {name}"\n', encoding="utf-8")
    (project / "shop.py").write_text(textwrap.dedent(USER_MODEL), encoding="utf-8")
    return project


def test_a_users_own_service_and_registry_packages_do_not_shadow_protoreg(tmp_path: Path) -> None:
    project = _user_project(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(project)}  # the project first on sys.path, as its own code runs
    base = ["--db", f"sqlite:///{tmp_path / 'r.db'}", "--protos", str(tmp_path / "protos")]
    commands = [[sys.executable, "-m", "protoreg", *base, "register", "shop:ShopModel"]]
    script = Path(sys.executable).with_name("protoreg")  # the installed console script, when there is one
    if script.exists():
        commands.append([str(script), *base, "check", "shop:ShopModel"])
    for command in commands:
        result = subprocess.run(command, capture_output=True, text=True, cwd=project, env=env, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "protos" / "shop_model" / "v1" / "shop_model.proto").exists()
    probe = (
        "import service, registry, migrations\n"
        "import protoreg.service.server, protoreg.registry.store, protoreg.migrations\n"
        "assert service.OWNER == \"the user's service\", service.__file__\n"
        "print(protoreg.service.server.__name__, protoreg.registry.store.__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=project, env=env,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["protoreg.service.server", "protoreg.registry.store"]


def _imported_top_level_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_code_imports_the_old_top_level_names() -> None:
    """From the repository root the folders are importable as ``registry`` and ``service`` too; a
    module imported under both names would exist twice (two ``ir.Field`` classes), so none may be."""
    folders = ("protoreg", "registry", "service", "migrations", "tests", "benchmarks", "models")
    offenders = []
    for folder in folders:
        for path in sorted((REPO / folder).rglob("*.py")):
            if path.relative_to(REPO).parts[:2] in {("protoreg", n) for n in OLD_NAMES}:
                continue  # the links into the real folders, scanned as themselves
            bad = _imported_top_level_names(path) & set(OLD_NAMES)
            if bad:
                offenders.append(f"{path.relative_to(REPO)}: {sorted(bad)}")
    assert not offenders, "import protoreg.registry/protoreg.service instead: " + "; ".join(offenders)


def test_the_wheel_holds_everything_inside_protoreg(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info next to the sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for name in ("protoreg", *OLD_NAMES):
        shutil.copytree(REPO / name, source / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), "."],
        capture_output=True, text=True, cwd=source, check=False,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("protoreg-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"protoreg", wheel.name.split("-py3")[0] + ".dist-info"}, top
    for folder in OLD_NAMES:
        shipped = {n.removeprefix("protoreg/") for n in names if n.startswith(f"protoreg/{folder}/")}
        in_repo = {
            str(p.relative_to(REPO))
            for p in (REPO / folder).rglob("*")
            if p.suffix in (".py", ".j2", ".mako", ".css", ".js", ".proto") and "__pycache__" not in p.parts
        }
        assert shipped == in_repo, (folder, sorted(in_repo ^ shipped))
