"""Serving: unary Predict and PredictStream throughput and latency against the references.

Five servers run side by side as separate processes on loopback ports: ``protoreg serve
iris_model``; ``protoreg serve`` of a null model (iris_model's name and schema, a ``predict``
that returns a constant); the seed-style reference and the framework floor
(:mod:`benchmarks.reference_servers`); and, as an experiment, protoreg's codecs on ``grpc.aio``
(``protoreg-aio``: what the server would gain from leaving the thread pool). One client process
(:mod:`benchmarks.loadgen`) measures them all, interleaved, round after round, at concurrency 1,
8 and 32 with the same request bytes.
Throughput is the median over rounds; p50 and p99 are medians of each round's percentiles.
Targets: protoreg >= 2.0x the seed-style throughput at concurrency 8; protoreg with the null
model >= 0.8x the floor.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from .fixtures import NULL_MODULE, write_module
from .reference_servers import generate_stubs, load_stubs
from .stats import median, ratio

SERVICE = "/iris_model.v1.IrisModelService"
REFERENCE_OF = {"protoreg": "seed-style", "protoreg-null": "floor", "protoreg-aio": "seed-style"}
IRIS = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def protoreg_script() -> str:
    return str(Path(sys.executable).parent / "protoreg")


def prepare_protos(root: Path) -> tuple[str, Path]:
    """Register iris_model into a temp registry and render its protos; returns (db url, protos dir)."""
    url = f"sqlite:///{root}/registry.db"
    protos = root / "protos"
    subprocess.run([protoreg_script(), "--db", url, "--protos", str(protos), "register", "iris_model"],
                   check=True, capture_output=True, text=True)
    return url, protos


@contextmanager
def running(name: str, argv: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A server process, stopped with SIGTERM (then SIGKILL) when the block ends."""
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def wait_ready(address: str, request: bytes, timeout: float = 120) -> bytes:
    """Call Predict until it answers; returns the answer's bytes."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(f"{SERVICE}/Predict", request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
        while True:
            try:
                return bytes(call(request, timeout=5))
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def run(smoke: bool, rounds: int) -> dict[str, Any]:
    concurrencies = [1, 8] if smoke else [1, 8, 32]
    seconds, warmup = (0.3, 0.1) if smoke else (1.5, 0.3)
    with tempfile.TemporaryDirectory(prefix="protoreg-bench-serving-") as tmp:
        root = Path(tmp)
        _, protos = prepare_protos(root)
        stubs = root / "stubs"
        generate_stubs(protos / "iris_model" / "v1" / "iris_model.proto", stubs)
        pb2, _ = load_stubs(stubs)
        request = pb2.PredictRequest(**IRIS)
        stream_request = pb2.PredictStreamRequest(request=request)
        write_module(root / "modules", "bench_null", NULL_MODULE)
        env = {**os.environ, "PYTHONPATH": f"{root / 'modules'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        ports = {name: free_port() for name in ("protoreg", "protoreg-null", "seed-style", "floor", "protoreg-aio")}
        serve = [protoreg_script(), "--protos", str(protos), "serve"]
        reference = [sys.executable, "-m", "benchmarks.reference_servers"]
        here = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = f"{env['PYTHONPATH']}{os.pathsep}{here}"
        with (
            running("protoreg", [*serve, "iris_model", "--address", f"127.0.0.1:{ports['protoreg']}"], env),
            running("protoreg-null", [*serve, "bench_null:NullIrisModel", "--address",
                                      f"127.0.0.1:{ports['protoreg-null']}"], env),
            running("seed-style", [*reference, "seed", "--stubs", str(stubs), "--port", str(ports["seed-style"])],
                    env),
            running("floor", [*reference, "floor", "--stubs", str(stubs), "--port", str(ports["floor"])], env),
            running("protoreg-aio", [*reference, "protoreg-aio", "--protos", str(protos), "--port",
                                     str(ports["protoreg-aio"])], env),
        ):
            raw = request.SerializeToString()
            answers = {name: wait_ready(f"127.0.0.1:{port}", raw) for name, port in ports.items()}
            if len(set(answers.values())) != 1:
                raise RuntimeError(f"the servers answer differently: {answers}")
            modes = {"protoreg": ["unary", "stream"], "protoreg-null": ["unary", "stream"],
                     "seed-style": ["unary"], "floor": ["unary"], "protoreg-aio": ["unary"]}
            plan = {
                "targets": [
                    {"name": name, "address": f"127.0.0.1:{port}", "unary": f"{SERVICE}/Predict",
                     "stream": f"{SERVICE}/PredictStream", "request": raw.hex(),
                     "stream_request": stream_request.SerializeToString().hex(), "modes": modes[name]}
                    for name, port in ports.items()
                ],
                "concurrencies": concurrencies,
                "rounds": rounds,
                "seconds": seconds,
                "warmup": warmup,
            }
            client = subprocess.run([sys.executable, "-m", "benchmarks.loadgen"], input=json.dumps(plan),
                                    capture_output=True, text=True, env=env, check=True, timeout=1800)
            measurements = json.loads(client.stdout)
    return summarise(measurements, concurrencies, rounds, seconds)


def summarise(measurements: list[dict[str, Any]], concurrencies: list[int], rounds: int,
              seconds: float) -> dict[str, Any]:
    cells: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for m in measurements:
        cells.setdefault((m["target"], m["mode"], m["concurrency"]), []).append(m)
    throughput = {key: median([m["throughput"] for m in ms]) for key, ms in cells.items()}
    rows: list[dict[str, Any]] = []
    for (target, mode, concurrency), ms in sorted(cells.items(), key=lambda kv: (kv[0][2], kv[0][1], kv[0][0])):
        row: dict[str, Any] = {
            "concurrency": concurrency,
            "server": target,
            "rpc": "Predict" if mode == "unary" else "PredictStream",
            "req/s (median)": round(throughput[(target, mode, concurrency)]),
            "req/s per round": ", ".join(f"{m['throughput']:.0f}" for m in ms),
            "p50 ms": round(median([m["p50_ms"] for m in ms]), 2),
            "p99 ms": round(median([m["p99_ms"] for m in ms]), 2),
            "errors": sum(m["errors"] for m in ms),
        }
        unary = throughput[key(target, concurrency)] if key(target, concurrency) in throughput else 0.0
        if mode == "stream":
            row["ratio"] = f"{ratio(throughput[(target, mode, concurrency)], unary):.2f}x unary"
        elif target in REFERENCE_OF:
            reference = REFERENCE_OF[target]
            row["ratio"] = f"{ratio(unary, throughput[key(reference, concurrency)]):.2f}x {reference}"
        rows.append(row)
    headline = 8 if 8 in concurrencies else concurrencies[-1]
    seed_ratio = ratio(throughput[key("protoreg", headline)], throughput[key("seed-style", headline)])
    floor_ratio = ratio(throughput[key("protoreg-null", headline)], throughput[key("floor", headline)])
    targets = [
        {"name": f"serving: protoreg / seed-style throughput, concurrency {headline}", "value": round(seed_ratio, 2),
         "target": ">= 2.0", "met": seed_ratio >= 2.0},
        {"name": f"serving: protoreg null model / floor throughput, concurrency {headline}",
         "value": round(floor_ratio, 2), "target": ">= 0.8", "met": floor_ratio >= 0.8},
    ]
    aio_ratio = ratio(throughput[key("protoreg-aio", headline)], throughput[key("seed-style", headline)])
    notes = [
        f"Experiment, not a target: protoreg's codecs on grpc.aio reach {aio_ratio:.2f}x the seed-style "
        f"throughput at concurrency {headline} (protoreg serve: {seed_ratio:.2f}x). Both sides spend most "
        "of their Python time in the iris model's scikit-learn predict; see the README's Performance section."
    ]
    return {
        "title": "Serving: unary Predict and PredictStream, one client process",
        "description": (__doc__.split("\n\n", 1)[1].strip() if __doc__ else "")
        + f" {rounds} rounds of {seconds:g} s per cell.",
        "rows": rows,
        "targets": targets,
        "notes": notes,
        "measurements": measurements,
    }


def key(target: str, concurrency: int) -> tuple[str, str, int]:
    return (target, "unary", concurrency)
