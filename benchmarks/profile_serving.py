"""Where the serving time goes: py-spy (``--gil``) on each server while the client loads it.

    python -m benchmarks.profile_serving [--concurrency 8] [--seconds 5]

Starts ``protoreg serve iris_model`` and the original service it replaces (and the original's
server with protoreg's model, ``seed-style``) like the serving benchmark does, keeps
``concurrency`` unary calls in flight against one at a time, samples the thread holding the GIL
with py-spy (from PyPI, in the dev extra), and prints, per server, the share of samples spent
inside each of a few functions: the model's ``predict``, protoreg's conversions and queue,
grpcio's server loop. Not part of ``make bench``; it is the
profile the README's Performance section quotes. Needs permission to ptrace the servers.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .reference_servers import generate_stubs, load_stubs
from .serving import IRIS, SERVICE, free_port, prepare_protos, protoreg_script, running, wait_ready

WATCHED = (
    "IrisModel.predict_batch",
    "IrisModel.predict",
    "OriginalIrisModel.predict",
    "ModelServicer.predict",
    "ModelLine.submit",
    "ModelLine._finished",
    "ModelCodec.to_input",
    "ModelCodec.to_response",
    "ClassicServicer.Predict",
    "MessageToDict",
    "_unary_response_in_pool",
    "_serve",
)


def shares(raw: Path) -> tuple[int, dict[str, float]]:
    """Total samples and, per watched function, the share of samples with it on the stack."""
    total = 0
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        samples = int(n)
        total += samples
        names = {frame.split(" (")[0] for frame in stack.split(";")}
        for watched in WATCHED:
            if any(name.endswith(watched) for name in names):
                counts[watched] += samples
    return total, {name: counts[name] / total for name in WATCHED if counts[name]} if total else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_serving", description=__doc__)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        print("py-spy is not installed: pip install py-spy (it is in the dev extra)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="protoreg-profile-") as tmp:
        root = Path(tmp)
        _, protos = prepare_protos(root)
        stubs = root / "stubs"
        generate_stubs(protos / "iris_model" / "v1" / "iris_model.proto", stubs)
        pb2, _ = load_stubs(stubs)
        request = pb2.PredictRequest(**IRIS).SerializeToString()
        here = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": f"{here}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        reference = [sys.executable, "-m", "benchmarks.reference_servers"]
        ports = {name: free_port() for name in ("protoreg", "original", "seed-style")}
        argvs = {
            "protoreg": [protoreg_script(), "--protos", str(protos), "serve", "iris_model", "--address",
                         f"127.0.0.1:{ports['protoreg']}"],
            "original": [*reference, "original", "--stubs", str(stubs), "--port", str(ports["original"])],
            "seed-style": [*reference, "seed", "--stubs", str(stubs), "--port", str(ports["seed-style"])],
        }
        for name, argv_ in argvs.items():
            with running(argv_, root / f"{name}.log", env) as process:
                address = f"127.0.0.1:{ports[name]}"
                wait_ready(address, request)
                plan = {"targets": [{"name": name, "address": address, "unary": f"{SERVICE}/Predict", "stream": "",
                                     "request": request.hex(), "stream_request": "", "modes": ["unary"]}],
                        "concurrencies": [args.concurrency], "rounds": 1, "seconds": args.seconds + 2,
                        "warmup": 0.5}
                client = subprocess.Popen([sys.executable, "-m", "benchmarks.loadgen"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, env=env, text=True)
                assert client.stdin is not None
                client.stdin.write(json.dumps(plan))
                client.stdin.close()
                time.sleep(1.0)
                raw = root / f"{name}.txt"
                subprocess.run([py_spy, "record", "-p", str(process.pid), "-d", str(int(args.seconds)), "-r", "200",
                                "--gil", "-f", "raw", "-o", str(raw), "--nonblocking"],
                               check=True, capture_output=True, timeout=args.seconds + 60)
                assert client.stdout is not None
                out = client.stdout.read()
                client.wait(timeout=args.seconds + 60)
                result = json.loads(out)[0]
                total, found = shares(raw)
                print(f"{name}: {result['throughput']:.0f} req/s at concurrency {args.concurrency}; "
                      f"{total} GIL samples over {args.seconds:g} s ({total / (args.seconds * 200):.0%} of the time)")
                for function, share in sorted(found.items(), key=lambda kv: -kv[1]):
                    print(f"  {share:6.1%}  {function}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
