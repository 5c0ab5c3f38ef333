"""What the benchmarks ran on: cores, CPU, Python and the versions of the libraries that matter."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

LIBRARIES = ("protoreg", "grpcio", "grpcio-tools", "protobuf", "pydantic", "sqlalchemy", "psycopg", "scikit-learn")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _library_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _postgres_version(url: str | None) -> str:
    if not url:
        return "not used"
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(url)
        with engine.connect() as conn:
            found = str(conn.execute(text("SHOW server_version")).scalar())
        engine.dispose()
        return found
    except Exception as error:  # the table still gets written without it
        return f"unavailable ({type(error).__name__})"


def describe_machine(postgres_url: str | None = None, buf: str | None = None) -> dict[str, Any]:
    buf_version = "not used"
    if buf:
        try:
            buf_version = subprocess.run([buf, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError:
            buf_version = "unavailable"
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "libraries": {name: _library_version(name) for name in LIBRARIES},
        "postgresql": _postgres_version(postgres_url),
        "buf": buf_version,
    }
