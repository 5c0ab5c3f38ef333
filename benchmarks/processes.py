"""Timing whole processes: wall time and peak memory (ru_maxrss of the process and its children)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessRun:
    wall: float  # seconds
    max_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


# The measured process is forked by this small helper, not by the benchmark process: a child
# forked (or vforked) from a big parent inherits the parent's peak RSS in ru_maxrss.
_HELPER = """
import json, os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
with open(out, "w") as f:
    json.dump({"wall": wall, "max_rss_kb": usage.ru_maxrss, "returncode": os.waitstatus_to_exitcode(status)}, f)
"""


def run_measured(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 300
) -> ProcessRun:
    """Run ``argv`` to completion; its wall time and peak RSS (``wait4`` in a small helper)."""
    with tempfile.TemporaryDirectory(prefix="protoreg-bench-run-") as tmp, _Capture() as out, _Capture() as err:
        report = Path(tmp) / "run.json"
        process = subprocess.Popen(
            [sys.executable, "-S", "-c", _HELPER, str(report), *argv],
            stdin=subprocess.DEVNULL, stdout=out.file, stderr=err.file,
            env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True,
        )
        try:
            process.wait(timeout=timeout)  # bounded: a hung tool cannot stall the run
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise RuntimeError(f"{argv[0]} did not finish within {timeout} s") from None
        data = json.loads(report.read_text())
        stdout, stderr = out.read(), err.read()
    return ProcessRun(data["wall"], data["max_rss_kb"] / 1024, data["returncode"], stdout, stderr)


class _Capture:
    """A temp file to capture output into (pipes could fill up while we poll wait4)."""

    def __enter__(self) -> _Capture:
        self.file = tempfile.TemporaryFile()
        return self

    def read(self) -> str:
        self.file.seek(0)
        return self.file.read().decode(errors="replace")

    def __exit__(self, *_exc: object) -> None:
        self.file.close()
