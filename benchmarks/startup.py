"""Start-up: the time from launching ``protoreg serve`` to the health service answering SERVING.

Generated small models (two inputs, one output) are registered into a temp registry and temp
``proto_versions/``, written as a module on ``PYTHONPATH``, and served by ``MODEL_REF``s: 1, 10
and 100 of them. The clock starts before the process is spawned (interpreter start, imports,
protoc compilation, binding and the port included) and stops at the first ``Check`` answered
SERVING; medians over the rounds, which alternate between the sizes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .fixtures import small_module_source, write_module
from .serving import free_port, protoreg_script, running
from .stats import median


def _register(root: Path, names: list[str], env: dict[str, str]) -> Path:
    protos = root / "protos"
    refs = [f"bench_startup:Model_{n}" for n in names]
    subprocess.run([protoreg_script(), "--db", f"sqlite:///{root}/registry.db", "--protos", str(protos), "register",
                    *refs], check=True, capture_output=True, text=True, env=env)
    return protos


def _time_to_serving(protos: Path, refs: list[str], env: dict[str, str], timeout: float = 300) -> float:
    port = free_port()
    argv = [protoreg_script(), "--protos", str(protos), "serve", *refs, "--address", f"127.0.0.1:{port}"]
    start = time.perf_counter()
    with running(argv, protos.parent / "serve.log", env) as process, \
            grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.perf_counter() - start < timeout:
            try:
                answer = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return time.perf_counter() - start
            except grpc.RpcError:
                if process.poll() is not None:
                    raise RuntimeError(f"protoreg serve exited with {process.returncode}") from None
            time.sleep(0.005)
    raise RuntimeError(f"protoreg serve was not SERVING after {timeout} s")


def run(smoke: bool, rounds: int) -> dict[str, Any]:
    sizes = [1, 3] if smoke else [1, 10, 100]
    times: dict[int, list[float]] = {n: [] for n in sizes}
    with tempfile.TemporaryDirectory(prefix="protoreg-bench-startup-") as tmp:
        root = Path(tmp)
        names = [f"start_{i:03d}" for i in range(max(sizes))]
        write_module(root / "modules", "bench_startup", small_module_source(names))
        env = {**os.environ, "PYTHONPATH": f"{root / 'modules'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        protos = _register(root, names, env)
        for _ in range(rounds):
            for n in sizes:
                times[n].append(_time_to_serving(protos, [f"bench_startup:Model_{x}" for x in names[:n]], env))
        bare = []
        for _ in range(rounds):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import protoreg.service.server"], check=True, env=env)
            bare.append(time.perf_counter() - start)
    rows: list[dict[str, Any]] = [
        {"models served": n, "to SERVING s (median)": round(median(ts), 3),
         "rounds s": ", ".join(f"{t:.3f}" for t in ts)}
        for n, ts in times.items()
    ]
    rows.append({"models served": "(python -c 'import protoreg.service.server')",
                 "to SERVING s (median)": round(median(bare), 3),
                 "rounds s": ", ".join(f"{t:.3f}" for t in bare)})
    return {
        "title": "Start-up: protoreg serve to health SERVING",
        "description": __doc__.split("\n\n", 1)[1].strip() if __doc__ else "",
        "rows": rows,
        "targets": [],
    }
