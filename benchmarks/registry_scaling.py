"""Registry scaling: the time to register release N of a 200-field model, N = 1, 10, 100, 1000.

Each release goes through ``Registry.register`` with the compatibility gate, exactly what
``protoreg register`` does inside its transaction (the re-rendering of ``proto_versions/`` that
the command does afterwards is not included). The time of release N is the median of releases
N, N+1 and N+2 of one model (of three fresh models for N = 1). Target: release 1000 within 1.5x
of release 10, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from typing import Any

from protoreg.registry.compat.gate import ReleaseGate
from protoreg.registry.database import open_registry
from protoreg.registry.registration import register_release
from protoreg.registry.schema import extract_schema

from .databases import postgres_registry, sqlite_registry
from .fixtures import wide_model
from .stats import median, ratio

SAMPLES = 3


def _register_times(url: str, checkpoints: list[int], fields: int) -> dict[int, list[float]]:
    last = max(checkpoints) + SAMPLES - 1
    wanted = {n + i for n in checkpoints if n > 1 for i in range(SAMPLES)}
    times: dict[int, list[float]] = {n: [] for n in checkpoints}
    with open_registry(url) as registry:
        for first in range(SAMPLES):  # release 1 of fresh models
            schema = extract_schema(wide_model(f"scaling_first_{first}", 1, fields))
            start = time.perf_counter()
            register_release(registry, schema, gate=ReleaseGate())
            times[1].append(time.perf_counter() - start)
        for release in range(1, last + 1):
            schema = extract_schema(wide_model("scaling_model", release, fields))
            start = time.perf_counter()
            result = register_release(registry, schema, gate=ReleaseGate())
            elapsed = time.perf_counter() - start
            if result.status != "created":
                raise RuntimeError(f"release {release} was {result.status}")
            if release in wanted:
                checkpoint = max(n for n in checkpoints if n <= release)
                times[checkpoint].append(elapsed)
    return times


def run(smoke: bool, postgres_url: str | None) -> dict[str, Any]:
    checkpoints = [1, 3, 6] if smoke else [1, 10, 100, 1000]
    fields = 20 if smoke else 200
    backends: list[tuple[str, AbstractContextManager[str]]] = [("SQLite", sqlite_registry())]
    if postgres_url:
        backends.append(("PostgreSQL", postgres_registry(postgres_url)))
    rows: list[dict[str, Any]] = []
    targets: list[dict[str, Any]] = []
    low, high = checkpoints[1], checkpoints[-1]
    for backend, registry_url in backends:
        with registry_url as url:
            times = _register_times(url, checkpoints, fields)
        medians = {n: median(ts) for n, ts in times.items()}
        for n in checkpoints:
            rows.append({
                "database": backend,
                "release N": n,
                "median ms": round(medians[n] * 1000, 1),
                "samples ms": ", ".join(f"{t * 1000:.1f}" for t in times[n]),
                f"ratio to N={low}": round(ratio(medians[n], medians[low]), 2),
            })
        value = ratio(medians[high], medians[low])
        targets.append({
            "name": f"registry: release {high} / release {low} ({backend})",
            "value": round(value, 2),
            "target": "<= 1.5",
            "met": value <= 1.5,
        })
    return {
        "title": f"Registry scaling: register release N of a {fields}-field model",
        "description": __doc__.split("\n\n", 1)[1].strip() if __doc__ else "",
        "rows": rows,
        "targets": targets,
    }
