"""Many writers at once, and registrations killed at every step, on SQLite and PostgreSQL.

Every process here is a real ``protoreg register`` started with subprocess; the registry is a
real SQLite file or a fresh PostgreSQL schema. Afterwards ``verify_registry`` must find nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from protoreg.registry.database import open_registry
from protoreg.registry.faults import CRASH_ENV, STEPS
from protoreg.registry.verify import verify_registry

FIXTURE_MODELS = textwrap.dedent(
    '''
    """Models for the reliability tests, importable as reliability_models:NAME."""
    from typing import Optional

    from pydantic import BaseModel, create_model


    class Out(BaseModel):
        label: str


    class Out2(BaseModel):
        label: str
        score: Optional[float] = None


    class In1(BaseModel):
        a: float


    class In2(BaseModel):
        a: float
        b: Optional[float] = None


    def make(name, version, inp, out):
        return type(name.title().replace("_", ""), (), {
            "qualified_name": name, "display_name": name, "description": "reliability fixture",
            "version": version, "input_schema": inp, "output_schema": out,
            "predict": lambda self, data: out(label="x"),
        })


    Crashy1 = make("crashy_model", "1.0.0", In1, Out)
    Crashy2 = make("crashy_model", "1.1.0", In2, Out2)
    Same = make("same_model", "1.0.0", In1, Out)
    ConflictA = make("conflict_model", "1.0.0", In1, Out)
    ConflictB = make("conflict_model", "1.0.0", In2, Out)
    Shared0 = make("shared_model", "1.0.0", In1, Out)
    for i in range(4):
        globals()[f"Other{i}"] = make(f"other{i}_model", "1.0.0", In1, Out)
        extra = create_model(f"Extra{i}", a=(float, ...), **{f"x{i}": (Optional[float], None)})
        globals()[f"Shared{i + 1}"] = make("shared_model", f"1.{i + 1}.0", extra, Out)
    '''
)


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    (tmp_path / "reliability_models.py").write_text(FIXTURE_MODELS)
    return tmp_path


def protoreg(url: str, root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full_env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **(env or {})}
    full_env.pop(CRASH_ENV, None) if not env or CRASH_ENV not in env else None
    return subprocess.Popen(
        [sys.executable, "-m", "protoreg", "--db", url, "--protos", str(root / "protos"), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = process.communicate(timeout=240)
    return process.returncode, out + err


@pytest.mark.slow
def test_sixteen_writers_at_once(registry_url: str, models_dir: Path) -> None:
    code, output = finish(protoreg(registry_url, models_dir, "register", "reliability_models:Shared0"))
    assert code == 0, output
    refs = [f"reliability_models:Other{i}" for i in range(4)]  # different models
    refs += [f"reliability_models:Shared{i}" for i in range(1, 5)]  # different versions of one model
    refs += ["reliability_models:Same"] * 6  # the very same release
    refs += ["reliability_models:ConflictA", "reliability_models:ConflictB"]  # one version, two schemas
    assert len(refs) == 16
    processes = [protoreg(registry_url, models_dir, "register", ref) for ref in refs]
    results = [finish(p) for p in processes]
    outputs = "\n".join(out for _, out in results)
    assert "database is locked" not in outputs and "could not serialize" not in outputs
    assert "Traceback" not in outputs, outputs

    for (code, output), ref in zip(results[:4], refs[:4], strict=True):
        assert code == 0 and "registered" in output, (ref, output)
    shared = results[4:8]
    created = [o for c, o in shared if c == 0 and ": registered" in o]
    # A version below one registered meanwhile is refused by the gate, as check refuses it (exit 100).
    lower = [o for c, o in shared if c == 100 and "VERSION_WENT_BACKWARDS" in o]
    assert created and len(created) + len(lower) == 4, [o for _, o in shared]
    same = results[8:14]
    assert all(code == 0 for code, _ in same), same
    assert sum(": registered" in o for _, o in same) == 1
    assert sum("already registered with this schema" in o for _, o in same) == 5
    conflict = results[14:]
    assert sorted(code for code, _ in conflict) == [0, 100], conflict  # VERSION_NOT_BUMPED, as check says
    assert any("already registered with a different schema" in o for _, o in conflict)

    with open_registry(registry_url) as registry:
        assert sorted(registry.model_names()) == sorted(
            ["conflict_model", "same_model", "shared_model"] + [f"other{i}_model" for i in range(4)]
        )
        versions = [r.version for r in registry.releases("shared_model")]
        assert len(versions) == 1 + len(created) and versions == sorted(versions)
        assert [r.version for r in registry.releases("same_model")] == ["1.0.0"]
        report = verify_registry(registry)
    assert report.ok, [p.describe() for p in report.problems]


@pytest.mark.slow
@pytest.mark.parametrize("step", STEPS)
def test_register_killed_at_any_step_leaves_a_consistent_registry(
    registry_url: str, models_dir: Path, step: str
) -> None:
    code, output = finish(protoreg(registry_url, models_dir, "register", "reliability_models:Crashy1"))
    assert code == 0, output
    killed = protoreg(registry_url, models_dir, "register", "reliability_models:Crashy2", env={CRASH_ENV: step})
    code, output = finish(killed)
    assert code == -9, f"the crash hook did not fire at {step}: {output}"

    with open_registry(registry_url) as registry:
        versions = [r.version for r in registry.releases("crashy_model")]
        report = verify_registry(registry)
    assert report.ok, [p.describe() for p in report.problems]
    assert versions == (["1.0.0", "1.1.0"] if step in ("committed", "rendering") else ["1.0.0"])

    code, output = finish(protoreg(registry_url, models_dir, "register", "reliability_models:Crashy2"))
    assert code == 0, output
    code, output = finish(protoreg(registry_url, models_dir, "render", "--check"))
    assert code == 0, output
    with open_registry(registry_url) as registry:
        assert [r.version for r in registry.releases("crashy_model")] == ["1.0.0", "1.1.0"]
        assert verify_registry(registry).ok


def test_verify_finds_a_broken_registry(sqlite_url: str, models_dir: Path) -> None:
    from sqlalchemy import create_engine, text

    code, output = finish(protoreg(sqlite_url, models_dir, "register", "reliability_models:Crashy1"))
    assert code == 0, output
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:  # an allocation no release uses, as a torn write would leave
        conn.execute(text(
            "INSERT INTO fields (message_id, number, name, names_json, type_key, active, first_release_id) "
            "SELECT message_id, 99, 'ghost', '[\"ghost\"]', 'single:scalar:double', 0, first_release_id "
            "FROM fields LIMIT 1"
        ))
        conn.execute(text("UPDATE releases SET proto_text = proto_text || '// tampered'"))
    engine.dispose()
    code, output = finish(protoreg(sqlite_url, models_dir, "verify"))
    assert code == 1
    assert "ORPHANED_ALLOCATION" in output and "ghost" in output
    assert "RENDER_MISMATCH" in output
