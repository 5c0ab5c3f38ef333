"""Serving: protoreg against the service it replaces, in the same run, by one independent client.

The servers run side by side as separate processes on loopback ports:

- ``original``: the 2020 service protoreg replaces, with its own model (a plain SVC on the raw
  features) on a sync grpcio server (:mod:`benchmarks.reference_servers`). Users compare whole
  services, so this is the reference.
- ``protoreg``: ``protoreg serve iris_model``, started the README's way (defaults).
- ``seed-style``: the original's server code running protoreg's iris model (the same-model row).
- ``protoreg-null`` and ``floor``: protoreg serving a model with iris's name and schema whose
  ``predict`` returns a constant (no ``predict_batch``), against a bare grpcio server returning a
  constant: protoreg's own cost. ``floor-aio`` is the same kind of server as protoreg's, bare
  (``grpc.aio``, parse and pydantic input, constant answer), as a second floor.
- ``protoreg-8ch`` and ``protoreg-2proc``: ``protoreg serve`` and ``protoreg serve --processes
  2``, each called over 8 channels (8 TCP connections, as 8 clients would), since
  ``--processes`` spreads connections, not calls.

One client process (:mod:`benchmarks.loadgen`, ``grpc.aio``, pre-encoded bytes) measures them
all, interleaved, round after round, at concurrency 1, 8, 32 and 64 with the same request bytes.
Throughput is the median over rounds; p50 and p99 are medians of each round's percentiles. Then
a soak: 64 callers on ``protoreg serve iris_model`` for a minute, its resident memory read
before and after, every status counted.

Targets: protoreg >= 2.0x the original's throughput at concurrency 8 and 32; protoreg's p50 at
concurrency 1 <= 1.1x the original's; the null model >= 0.9x the floor at concurrency 8; under the
soak, RSS grows < 10% and no call ends with an error.
"""

from __future__ import annotations

import json
import os
import re
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
IRIS = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
# the reference of each compared server, for the ratio column
REFERENCE_OF = {"protoreg": "original", "seed-style": "original", "protoreg-null": "floor",
                "protoreg-2proc": "protoreg-8ch"}
SUMMARY = re.compile(r"served (?P<service>\S+): (?P<calls>\d+) calls in (?P<batches>\d+) batches "
                     r"\(mean size (?P<mean>[\d.]+); sizes (?P<sizes>[^)]*)\)")


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
def running(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A server process writing to ``log``, stopped with SIGTERM (then SIGKILL) when the block ends."""
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=out, env=env)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


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


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def batch_sizes(log: Path) -> str:
    """The batch-size summary ``protoreg serve`` logs when it stops."""
    found = SUMMARY.search(log.read_text(errors="replace"))
    if found is None:
        return "(not logged)"
    return f"{found['calls']} calls in {found['batches']} batches, mean size {found['mean']}; sizes {found['sizes']}"


def _target(name: str, port: int, raw: bytes, stream: bytes, modes: list[str], channels: int = 1) -> dict[str, Any]:
    return {"name": name, "address": f"127.0.0.1:{port}", "unary": f"{SERVICE}/Predict",
            "stream": f"{SERVICE}/PredictStream", "request": raw.hex(), "stream_request": stream.hex(),
            "modes": modes, "channels": channels}


def run(smoke: bool, rounds: int) -> dict[str, Any]:
    concurrencies = [1, 8] if smoke else [1, 8, 32, 64]
    seconds, warmup = (0.3, 0.1) if smoke else (1.5, 0.3)
    soak_seconds = 3.0 if smoke else 60.0
    with tempfile.TemporaryDirectory(prefix="protoreg-bench-serving-") as tmp:
        root = Path(tmp)
        _, protos = prepare_protos(root)
        stubs = root / "stubs"
        generate_stubs(protos / "iris_model" / "v1" / "iris_model.proto", stubs)
        pb2, _ = load_stubs(stubs)
        request = pb2.PredictRequest(**IRIS)
        raw = request.SerializeToString()
        stream_request = pb2.PredictStreamRequest(request=request).SerializeToString()
        write_module(root / "modules", "bench_null", NULL_MODULE)
        here = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(root / "modules"), here, os.environ.get("PYTHONPATH", "")])}
        names = ["original", "protoreg", "seed-style", "floor", "floor-aio", "protoreg-null", "protoreg-8ch",
                 "protoreg-2proc"]
        ports = {name: free_port() for name in names}
        logs = {name: root / f"{name}.log" for name in names}

        def serve(name: str, *args: str) -> list[str]:
            return [protoreg_script(), "--protos", str(protos), "serve", *args,
                    "--address", f"127.0.0.1:{ports[name]}"]

        def reference(name: str, kind: str) -> list[str]:
            return [sys.executable, "-m", "benchmarks.reference_servers", kind, "--stubs", str(stubs),
                    "--port", str(ports[name])]

        argv = {
            "original": reference("original", "original"),
            "protoreg": serve("protoreg", "iris_model"),
            "seed-style": reference("seed-style", "seed"),
            "floor": reference("floor", "floor"),
            "floor-aio": reference("floor-aio", "floor-aio"),
            "protoreg-null": serve("protoreg-null", "bench_null:NullIrisModel"),
            "protoreg-8ch": serve("protoreg-8ch", "iris_model"),
            "protoreg-2proc": serve("protoreg-2proc", "iris_model", "--processes", "2"),
        }
        processes: dict[str, subprocess.Popen[bytes]] = {}
        with _all_running(argv, logs, env, processes):
            answers = {name: wait_ready(f"127.0.0.1:{port}", raw) for name, port in ports.items()}
            if len(set(answers.values())) != 1:
                raise RuntimeError(f"the servers answer differently: {answers}")
            streams = ["unary", "stream"]
            plan = {
                "targets": [
                    _target("original", ports["original"], raw, stream_request, ["unary"]),
                    _target("protoreg", ports["protoreg"], raw, stream_request, streams),
                    _target("seed-style", ports["seed-style"], raw, stream_request, ["unary"]),
                    _target("floor", ports["floor"], raw, stream_request, ["unary"]),
                    _target("floor-aio", ports["floor-aio"], raw, stream_request, ["unary"]),
                    _target("protoreg-null", ports["protoreg-null"], raw, stream_request, streams),
                    _target("protoreg-8ch", ports["protoreg-8ch"], raw, stream_request, ["unary"], channels=8),
                    _target("protoreg-2proc", ports["protoreg-2proc"], raw, stream_request, ["unary"], channels=8),
                ],
                "concurrencies": concurrencies,
                "rounds": rounds,
                "seconds": seconds,
                "warmup": warmup,
            }
            measurements = _load(plan, env)
            soak = _soak(ports["protoreg"], processes["protoreg"].pid, raw, soak_seconds, env)
        sizes = {name: batch_sizes(logs[name]) for name in ("protoreg", "protoreg-8ch")}
    return summarise(measurements, concurrencies, rounds, seconds, soak, sizes)


@contextmanager
def _all_running(argv: dict[str, list[str]], logs: dict[str, Path], env: dict[str, str],
                 processes: dict[str, subprocess.Popen[bytes]]) -> Iterator[None]:
    if not argv:
        yield
        return
    name, rest = next(iter(argv)), dict(list(argv.items())[1:])
    with running(argv[name], logs[name], env) as process:
        processes[name] = process
        with _all_running(rest, logs, env, processes):
            yield


def _load(plan: dict[str, Any], env: dict[str, str]) -> list[dict[str, Any]]:
    client = subprocess.run([sys.executable, "-m", "benchmarks.loadgen"], input=json.dumps(plan),
                            capture_output=True, text=True, env=env, check=True, timeout=3600)
    return json.loads(client.stdout)  # type: ignore[no-any-return]


def _soak(port: int, pid: int, raw: bytes, seconds: float, env: dict[str, str]) -> dict[str, Any]:
    """64 callers for ``seconds``; the server's RSS after the warm-up and at the end."""
    warmup = min(10.0, seconds / 6)
    plan = {"targets": [_target("protoreg", port, raw, b"", ["unary"])], "concurrencies": [64], "rounds": 1,
            "seconds": seconds, "warmup": warmup}
    client = subprocess.Popen([sys.executable, "-m", "benchmarks.loadgen"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    assert client.stdin is not None and client.stdout is not None
    client.stdin.write(json.dumps(plan))
    client.stdin.close()
    time.sleep(warmup + 1.0)  # the warm-up has run: the server has its working set
    before = rss_kib(pid)
    (result,) = json.loads(client.stdout.read())
    client.wait()
    after = rss_kib(pid)
    return {"seconds": seconds, "calls": result["calls"], "throughput": result["throughput"],
            "errors": result["errors"], "error_counts": result.get("error_counts", {}),
            "rss_before_kib": before, "rss_after_kib": after, "rss_growth": (after - before) / before}


def summarise(measurements: list[dict[str, Any]], concurrencies: list[int], rounds: int, seconds: float,
              soak: dict[str, Any], sizes: dict[str, str]) -> dict[str, Any]:
    cells: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for m in measurements:
        cells.setdefault((m["target"], m["mode"], m["concurrency"]), []).append(m)
    throughput = {k: median([m["throughput"] for m in ms]) for k, ms in cells.items()}
    p50 = {k: median([m["p50_ms"] for m in ms]) for k, ms in cells.items()}
    rows: list[dict[str, Any]] = []
    for (target, mode, concurrency), ms in sorted(cells.items(), key=lambda kv: (kv[0][2], kv[0][1], kv[0][0])):
        row: dict[str, Any] = {
            "concurrency": concurrency,
            "server": target,
            "rpc": "Predict" if mode == "unary" else "PredictStream",
            "req/s (median)": round(throughput[(target, mode, concurrency)]),
            "req/s per round": ", ".join(f"{m['throughput']:.0f}" for m in ms),
            "p50 ms": round(p50[(target, mode, concurrency)], 2),
            "p99 ms": round(median([m["p99_ms"] for m in ms]), 2),
            "errors": sum(m["errors"] for m in ms),
        }
        own = throughput[(target, mode, concurrency)]
        if mode == "stream":
            row["ratio"] = f"{ratio(own, throughput[key(target, concurrency)]):.2f}x unary"
        elif target in REFERENCE_OF:
            reference = REFERENCE_OF[target]
            row["ratio"] = f"{ratio(own, throughput[key(reference, concurrency)]):.2f}x {reference}"
        rows.append(row)

    def against(target: str, reference: str, concurrency: int) -> float:
        return ratio(throughput[key(target, concurrency)], throughput[key(reference, concurrency)])

    targets = []
    for concurrency in (8, 32):
        if concurrency in concurrencies:
            value = against("protoreg", "original", concurrency)
            targets.append({"name": f"serving: protoreg / original throughput, concurrency {concurrency}",
                            "value": round(value, 2), "target": ">= 2.0", "met": value >= 2.0})
    latency = ratio(p50[key("protoreg", 1)], p50[key("original", 1)])
    targets.append({"name": "serving: protoreg / original p50 latency, concurrency 1", "value": round(latency, 2),
                    "target": "<= 1.1", "met": latency <= 1.1})
    null = against("protoreg-null", "floor", 8)
    targets.append({"name": "serving: protoreg null model / floor throughput, concurrency 8",
                    "value": round(null, 2), "target": ">= 0.9", "met": null >= 0.9})
    null_aio = against("protoreg-null", "floor-aio", 8)
    targets.append({"name": "serving: protoreg null model / grpc.aio floor throughput, concurrency 8",
                    "value": round(null_aio, 2), "target": ">= 0.9", "met": null_aio >= 0.9})
    growth = soak["rss_growth"]
    targets.append({"name": f"serving: RSS growth over a {soak['seconds']:g} s soak at concurrency 64",
                    "value": f"{growth:+.1%}", "target": "< 10%", "met": growth < 0.10})
    targets.append({"name": "serving: error statuses in the soak", "value": soak["errors"], "target": "0",
                    "met": soak["errors"] == 0})
    top = concurrencies[-1]
    notes = [
        f"Batch sizes of `protoreg serve iris_model` over the whole run (all concurrencies): {sizes['protoreg']}.",
        f"The same, called over 8 channels: {sizes['protoreg-8ch']}.",
        f"`--processes 2` over 8 channels is {against('protoreg-2proc', 'protoreg-8ch', top):.2f}x one process "
        f"at concurrency {top} ({against('protoreg-2proc', 'protoreg-8ch', 8):.2f}x at 8): on this machine the "
        "client shares the two cores with the servers, so a second server process has no core of its own.",
        f"Soak: {soak['calls']} calls in {soak['seconds']:g} s ({soak['throughput']:.0f} req/s) at concurrency 64; "
        f"RSS {soak['rss_before_kib']} KiB after the warm-up, {soak['rss_after_kib']} KiB at the end "
        f"({growth:+.1%}); error statuses {soak['error_counts'] or 'none'}.",
    ]
    return {
        "title": "Serving: protoreg against the service it replaces, one client process",
        "description": (__doc__.split("\n\n", 1)[1].strip() if __doc__ else "")
        + f" {rounds} rounds of {seconds:g} s per cell.",
        "rows": rows,
        "targets": targets,
        "notes": notes,
        "measurements": measurements,
        "soak": soak,
    }


def key(target: str, concurrency: int) -> tuple[str, str, int]:
    return (target, "unary", concurrency)
