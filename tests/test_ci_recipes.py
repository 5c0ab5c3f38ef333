"""The recipes of docs/ci.md and .pre-commit-hooks.yaml, run as written.

The commands come from the documents themselves (the GitHub Actions steps, the GitLab job's
script, the hook's entry; only the install lines are left out, the test's environment has
protoreg and the model is imported from the checkout), and run with bash in a real git
repository with a remote and branches: a pull request that removes an output field under a
minor bump is refused, also when its release was registered by going around the gate; the same
change under a major bump passes; two branches that register releases of one model conflict,
and a resolution that keeps both is caught.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.project_support import Project

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "ci.md").read_text(encoding="utf-8")
REMOVED_LABEL = "score: float"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.DOTALL)


def _github_steps() -> list[str]:
    workflow = next(yaml.safe_load(b) for b in _blocks("yaml") if "runs-on" in b)
    steps = workflow["jobs"]["api-gate"]["steps"]
    return [s["run"] for s in steps if "run" in s and not s["run"].startswith("pip install")]


def _gitlab_steps() -> list[str]:
    job = next(yaml.safe_load(b) for b in _blocks("yaml") if "CI_MERGE_REQUEST_DIFF_BASE_SHA" in b)["protoreg"]
    return [line for line in job["script"] if not line.startswith("pip install")]


def _hook() -> dict[str, Any]:
    hooks: list[dict[str, Any]] = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    return next(h for h in hooks if h["id"] == "protoreg-check")


class Pipeline:
    def __init__(self, project: Project, tmp: Path) -> None:
        self.project = project
        self.tmp = tmp
        self.runs = 0

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PROTOREG_DB")}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return {**env, **extra}

    def run(self, steps: list[str], env: dict[str, str]) -> list[subprocess.CompletedProcess[str]]:
        """Each step with bash as the CI runners run it, stopping at the first that fails."""
        results = []
        for step in steps:
            result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step],
                                    cwd=self.project.root, env=env, capture_output=True, text=True, check=False)
            results.append(result)
            if result.returncode:
                break
        return results

    def github(self) -> list[subprocess.CompletedProcess[str]]:
        self.runs += 1
        temp = self.tmp / f"runner{self.runs}"
        temp.mkdir()
        env = self.env(GITHUB_EVENT_NAME="pull_request", GITHUB_BASE_REF="main", RUNNER_TEMP=str(temp))
        try:
            return self.run(_github_steps(), env)
        finally:
            self.project.git("worktree", "prune")

    def gitlab(self) -> list[subprocess.CompletedProcess[str]]:
        base = self.project.git("merge-base", "HEAD", "origin/main").stdout.strip()
        self.runs += 1
        temp = self.tmp / f"runner{self.runs}"  # the job's $TMPDIR: a runner of its own
        temp.mkdir()
        try:
            return self.run(_gitlab_steps(), self.env(CI_MERGE_REQUEST_DIFF_BASE_SHA=base,
                                                      CI_PIPELINE_SOURCE="merge_request_event", TMPDIR=str(temp)))
        finally:
            self.project.git("worktree", "prune")

    def hook(self, files: list[str]) -> subprocess.CompletedProcess[str]:
        """The hook's entry with the staged files it matches, as pre-commit calls it."""
        hook = _hook()
        matching = [f for f in files if re.search(hook["files"], f)]
        return subprocess.run(["bash", "-c", f'{hook["entry"]} "$@"', "hook", *matching], cwd=self.project.root,
                              env=self.env(), capture_output=True, text=True, check=False)


def _codes(results: list[subprocess.CompletedProcess[str]]) -> list[int]:
    return [r.returncode for r in results]


def _output(results: list[subprocess.CompletedProcess[str]]) -> str:
    return "".join(r.stdout + r.stderr for r in results)


@pytest.fixture
def repo(project: Project, tmp_path: Path) -> Pipeline:
    """main holds shop_model 1.0.0, registered into proto_registry/ and pushed to origin."""
    pyproject = next(b for b in _blocks("toml") if "[tool.protoreg]" in b)
    project.write("pyproject.toml", pyproject)
    project.write(".gitignore", "protoreg-*.xml\n")  # the GitLab job's reports
    project.model("1.0.0")
    assert project.git("init", "-q", "-b", "main").returncode == 0
    assert project.run("register", "--all").returncode == 0
    project.git("add", "-A")
    assert project.git("commit", "-qm", "shop_model 1.0.0").returncode == 0
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    project.git("remote", "add", "origin", str(origin))
    assert project.git("push", "-q", "-u", "origin", "main").returncode == 0
    return Pipeline(project, tmp_path)


def _commit(project: Project, message: str) -> None:
    project.git("add", "-A")
    assert project.git("commit", "-qm", message).returncode == 0, message


@pytest.mark.slow
def test_a_minor_bump_that_removes_an_output_field_is_refused(repo: Pipeline) -> None:
    p = repo.project
    p.git("checkout", "-q", "-b", "drop-label")
    p.model("1.1.0", outputs=REMOVED_LABEL)
    assert p.run("register", "--all").returncode == 100  # the developer's own gate
    assert repo.hook(["shop/models.py"]).returncode == 100
    assert repo.hook(["README.md"]).returncode == 0
    _commit(p, "shop_model 1.1.0 without label")  # the code alone
    github, gitlab = repo.github(), repo.gitlab()
    assert _codes(github)[-1] == 100 and _codes(gitlab)[-1] == 100, _output(github) + _output(gitlab)
    removed = 'Field "label" (2) was removed from "PredictResponse".'
    assert f"title=FIELD_REMOVED::{removed}" in _output(github)
    assert removed in (p.root / "protoreg-head.xml").read_text()  # GitLab's test report
    # Registered by going around the gate (an exception, dropped again before the commit): this
    # commit's registry agrees with the code, and the check against main's registry refuses it.
    pyproject = (p.root / "pyproject.toml").read_text()
    p.write("pyproject.toml", pyproject + '\n[[tool.protoreg.exceptions]]\nrule = "FIELD_REMOVED"\nreason = "x"\n')
    assert p.run("register", "--all").returncode == 0
    p.write("pyproject.toml", pyproject)
    _commit(p, "register shop_model 1.1.0")
    github, gitlab = repo.github(), repo.gitlab()
    assert _codes(github) == [0, 0, 100], _output(github)  # the last step checks against main's registry
    assert _codes(gitlab) == [0, 0, 0, 100], _output(gitlab)


@pytest.mark.slow
def test_the_same_change_under_a_major_bump_passes(repo: Pipeline) -> None:
    p = repo.project
    p.git("checkout", "-q", "-b", "drop-label-major")
    p.model("2.0.0", outputs=REMOVED_LABEL)
    assert p.run("register", "--all").returncode == 0
    _commit(p, "shop_model 2.0.0 without label")
    github = repo.github()
    assert _codes(github) == [0, 0, 0], _output(github)
    assert "::notice title=protoreg::shop_model 2.0.0 passed against 1.0.0" in _output(github)
    gitlab = repo.gitlab()
    assert _codes(gitlab) == [0, 0, 0, 0], _output(gitlab)
    assert (p.root / "protoreg-base.xml").read_text().count('failures="0"') >= 1


@pytest.mark.slow
def test_two_branches_that_register_one_model_collide(repo: Pipeline) -> None:
    p = repo.project
    for branch, field in (("add-x", "x"), ("add-y", "y")):
        p.git("checkout", "-q", "main")
        p.git("checkout", "-q", "-b", branch)
        p.model("1.1.0", inputs=f"age: int\n    name: str\n    {field}: int = 0")
        assert p.run("register", "--all").returncode == 0
        _commit(p, f"shop_model 1.1.0 with {field}")
    p.git("checkout", "-q", "main")
    assert p.git("merge", "-q", "add-x").returncode == 0  # the first pull request lands
    merged = p.git("merge", "add-y")
    assert merged.returncode != 0
    assert "CONFLICT (content): Merge conflict in proto_registry/shop_model.txt" in merged.stdout
    # A resolution that keeps both sides' lines (what a union merge driver does) is caught.
    path = "proto_registry/shop_model.txt"
    sides = {stage: p.git("show", f":{stage}:{path}").stdout for stage in (1, 2, 3)}
    for stage, text in sides.items():
        (p.root / f"side{stage}").write_text(text)
    subprocess.run(["git", "merge-file", "--union", "side2", "side1", "side3"], cwd=p.root, check=False)
    (p.root / path).write_text((p.root / "side2").read_text())
    for stage in sides:
        (p.root / f"side{stage}").unlink()
    p.git("checkout", "--theirs", "proto_versions")
    _commit(p, "merge add-y, keeping both")
    for results in (repo.github(), repo.gitlab()):
        assert _codes(results)[-1] == 1, _output(results)
        assert "two branches registered" in _output(results)
