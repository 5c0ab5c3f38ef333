"""``python -m benchmarks`` (``make bench``): run every benchmark and write the results.

    python -m benchmarks                      # everything, writes benchmarks/results.{md,json}
    python -m benchmarks --only serving,check # some sections
    python -m benchmarks --smoke --out DIR    # tiny sizes, seconds not minutes (tests use it)

Sections: ``registry`` (registration cost against the release count), ``breaking`` (protoreg
breaking vs buf breaking), ``check`` (protoreg check on a big registry), ``serving`` (Predict and
PredictStream against the seed-style reference and the framework floor), ``startup``.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .databases import postgres_base_url
from .machine import describe_machine
from .results import write_results

SECTIONS = ("registry", "breaking", "check", "serving", "startup")


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def run_sections(sections: list[str], smoke: bool, rounds: int, postgres: str | None) -> list[dict[str, Any]]:
    from . import checking, registry_scaling, serving, startup

    runners = {
        "registry": lambda: registry_scaling.run(smoke, postgres),
        "breaking": lambda: checking.run_breaking(smoke, rounds),
        "check": lambda: checking.run_check(smoke, rounds),
        "serving": lambda: serving.run(smoke, rounds),
        "startup": lambda: startup.run(smoke, rounds),
    }
    results = []
    for name in sections:
        start = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        section = runners[name]()
        section["section"] = name
        section["seconds"] = round(time.perf_counter() - start, 1)
        print(f"[bench] {name} done in {section['seconds']} s", file=sys.stderr, flush=True)
        results.append(section)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="Run protoreg's benchmarks.")
    parser.add_argument("--smoke", action="store_true", help="Tiny sizes and short runs (for the test suite).")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"Comma-separated sections of {SECTIONS}.")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds per comparison (medians of these).")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent, help="Where results.{md,json} go.")
    parser.add_argument("--no-postgres", action="store_true", help="Skip the PostgreSQL rows.")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {SECTIONS}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    postgres = None if args.no_postgres else postgres_base_url()
    from .checking import buf_binary

    buf = buf_binary()
    started = _stamp()
    command = "make bench" if argv is None and not args.smoke and args.only == ",".join(SECTIONS) else (
        "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv)).strip()
    results = {
        "command": command,
        "mode": "smoke" if args.smoke else "full",
        "rounds": args.rounds,
        "started": started,
        "machine": describe_machine(postgres, str(buf) if buf else None),
        "sections": run_sections(sections, args.smoke, args.rounds, postgres),
    }
    results["finished"] = _stamp()
    args.out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = write_results(results, args.out)
    print(f"wrote {md_path} and {json_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
