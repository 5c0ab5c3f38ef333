"""docs/deploy.md: its manifests parse, use only flags ``protoreg serve`` has, and fit together."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from protoreg.cli import main

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "deploy.md"


def _documents() -> list[dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", GUIDE.read_text(), flags=re.S)
    assert blocks, "docs/deploy.md has no YAML"
    return [doc for block in blocks for doc in yaml.safe_load_all(block) if doc]


def _container() -> tuple[dict[str, Any], dict[str, Any]]:
    (deployment,) = [d for d in _documents() if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return deployment, container


def test_the_manifests_parse_as_a_deployment_and_a_service() -> None:
    kinds = sorted(d["kind"] for d in _documents())
    assert kinds == ["Deployment", "Service"]


def test_every_flag_the_manifest_passes_exists_in_serve_help() -> None:
    _, container = _container()
    args = container["args"]
    assert args[:2] == ["serve", "iris_model"]
    help_text = CliRunner().invoke(main, ["serve", "--help"]).output
    for arg in args[2:]:
        flag = arg.split("=", 1)[0]
        assert flag.startswith("--") and flag in help_text, f"{flag} is not a `protoreg serve` option"


def test_probes_metrics_and_grace_fit_together() -> None:
    deployment, container = _container()
    args = dict(a.split("=", 1) for a in container["args"][2:])
    port = int(args["--address"].rsplit(":", 1)[1])
    assert args["--address"].startswith("0.0.0.0:")
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == port
    metrics_port = int(args["--metrics-address"].rsplit(":", 1)[1])
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and int(annotations["prometheus.io/port"]) == metrics_port
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": port, "metrics": metrics_port}
    # SIGKILL comes after terminationGracePeriodSeconds; the server needs --grace plus a few seconds
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= float(args["--grace"]) + 5
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    for flag in ("--tls-cert", "--tls-key", "--auth-token-file"):
        assert any(args[flag].startswith(mount) for mount in mounts), f"{flag} is not on a mounted secret"
