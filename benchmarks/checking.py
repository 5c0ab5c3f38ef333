"""Checking: ``protoreg breaking`` against ``buf breaking``, and ``protoreg check`` on a big registry.

*breaking*: a generated API of 500 messages x 40 fields (ten ``.proto`` files, one service
whose RPCs reach every message) and a copy with 1% of the fields mutated (types changed within
and across wire groups, renames, removals, renumberings). Both tools read the two directories of
``.proto`` files, compile them and compare, as whole processes, for the WIRE and the WIRE_JSON
categories; runs alternate between the tools. Wall time and peak RSS (``wait4``) of each
process, medians over the rounds. buf is the native binary from the npm package
``@bufbuild/buf``. Target: protoreg's wall time <= 1.0x buf's.

*check*: a SQLite registry holding 50 models x 200 fields x 100 releases each (the first model
registered release by release, the other 49 copies of its rows under their own names), and a
module with release 101 of every model. ``protoreg check`` of one model and of all 50, as whole
processes (interpreter start, imports and the model module included). Target: under 1 second.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from .fixtures import wide_model, wide_module_source, write_module
from .processes import ProcessRun, run_measured
from .stats import median, ratio

SCALARS = ("int32", "int64", "uint32", "uint64", "sint32", "sint64", "bool", "string", "bytes", "double", "float",
           "fixed32", "fixed64")
# A mutation picks one of these; the first two are wire-compatible (one also JSON-compatible).
TYPE_SWAPS = {"int32": ("uint32", "int64", "string"), "int64": ("uint64", "int32", "double"),
              "string": ("bytes", "int64"), "double": ("float", "int64"), "bool": ("int32", "string")}


def buf_binary() -> Path | None:
    """The native buf binary from the npm package (the JS launcher only adds a node start-up)."""
    cache = Path(os.environ.get("PROTOREG_BUF_CACHE", Path.home() / ".cache" / "protoreg-buf"))
    for candidate in (cache / "node_modules" / "@bufbuild" / "buf-linux-x64" / "bin" / "buf",
                      cache / "node_modules" / "@bufbuild" / "buf-linux-arm64" / "bin" / "buf",
                      cache / "node_modules" / ".bin" / "buf"):
        if candidate.exists():
            return candidate
    found = shutil.which("buf")
    return Path(found) if found else None


# -- the generated API ------------------------------------------------------------------------


def _api(messages: int, fields: int, files: int, rng: random.Random) -> list[dict[str, Any]]:
    api = []
    for m in range(messages):
        fs = []
        for n in range(1, fields + 1):
            roll = rng.random()
            if roll < 0.1 and m + 1 < messages:
                ftype, label = f"M{m + 1:03d}", "optional"
            elif roll < 0.2:
                ftype, label = rng.choice(SCALARS), "repeated"
            else:
                ftype, label = rng.choice(SCALARS), "optional"
            fs.append({"name": f"f{n:02d}", "number": n, "type": ftype, "label": label})
        api.append({"name": f"M{m:03d}", "file": m * files // messages, "fields": fs, "reserved": []})
    return api


def _mutate(api: list[dict[str, Any]], share: float, rng: random.Random) -> list[dict[str, Any]]:
    mutated = json.loads(json.dumps(api))
    candidates = [(m, f) for m in range(len(mutated)) for f in range(len(mutated[m]["fields"]))]
    for m, f in rng.sample(candidates, round(len(candidates) * share)):
        message = mutated[m]
        field = message["fields"][f]
        if field is None:
            continue
        kind = rng.choice(("type", "type", "rename", "remove", "renumber"))
        if kind == "type" and field["type"] in TYPE_SWAPS:
            field["type"] = rng.choice(TYPE_SWAPS[field["type"]])
        elif kind == "rename":
            field["name"] += "_renamed"
        elif kind == "remove":
            message["reserved"].append(field["number"])
            message["fields"][f] = None
        else:
            field["number"] += 1000
    for message in mutated:
        message["fields"] = [f for f in message["fields"] if f is not None]
    return mutated


def _write_api(api: list[dict[str, Any]], root: Path, files: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for index in range(files):
        lines = ['syntax = "proto3";', "", "package bench.v1;", ""]
        lines += [f'import "bench/v1/api{other}.proto";' for other in range(index + 1, files)]
        if index == 0:
            lines += ["", "service BenchService {"]
            lines += [f"  rpc Call{m['name']}({m['name']}) returns ({m['name']});" for m in api[::25]]
            lines += ["}"]
        for message in (m for m in api if m["file"] == index):
            lines += ["", f"message {message['name']} {{"]
            for f in message["fields"]:
                label = "repeated " if f["label"] == "repeated" else "optional "
                if f["type"].startswith("M"):
                    label = ""
                lines.append(f"  {label}{f['type']} {f['name']} = {f['number']};")
            if message["reserved"]:
                lines.append(f"  reserved {', '.join(str(n) for n in sorted(message['reserved']))};")
            lines.append("}")
        path = root / "bench" / "v1" / f"api{index}.proto"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")


def make_pair(root: Path, messages: int, fields: int, files: int, share: float = 0.01) -> tuple[Path, Path]:
    rng = random.Random(20261126)
    api = _api(messages, fields, files, rng)
    old, new = root / "old", root / "new"
    _write_api(api, old, files)
    _write_api(_mutate(api, share, rng), new, files)
    return old, new


# -- breaking ---------------------------------------------------------------------------------


def _protoreg_script() -> str:
    script = Path(sys.executable).parent / "protoreg"
    return str(script) if script.exists() else str(shutil.which("protoreg"))


def _summary(run: ProcessRun) -> str:
    lines = [line for line in run.stdout.strip().splitlines() if line]
    return lines[-1] if lines else run.stderr.strip().splitlines()[-1] if run.stderr.strip() else ""


def run_breaking(smoke: bool, rounds: int) -> dict[str, Any]:
    buf = buf_binary()
    messages, fields = (50, 10) if smoke else (500, 40)
    rows: list[dict[str, Any]] = []
    targets: list[dict[str, Any]] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="protoreg-bench-breaking-") as tmp:
        old, new = make_pair(Path(tmp), messages, fields, files=10)
        for category in ("WIRE", "WIRE_JSON"):
            ours_argv = [_protoreg_script(), "breaking", str(new), "--against", str(old), "--category", category,
                         "--format", "json"]
            config = json.dumps({"version": "v2", "breaking": {"use": [category]}})
            theirs_argv = [str(buf), "breaking", str(new), "--against", str(old), "--config", config,
                           "--error-format", "json"] if buf else []
            runs: dict[str, list[ProcessRun]] = {"protoreg": [], "buf": []}
            for _ in range(rounds):
                runs["protoreg"].append(run_measured(ours_argv))
                if buf:
                    runs["buf"].append(run_measured(theirs_argv))
            walls = {tool: median([r.wall for r in rs]) for tool, rs in runs.items() if rs}
            for tool, rs in runs.items():
                if not rs:
                    continue
                found = _count_findings(tool, rs[-1])
                rows.append({
                    "category": category,
                    "tool": tool,
                    "wall s (median)": round(walls[tool], 3),
                    "walls s": ", ".join(f"{r.wall:.3f}" for r in rs),
                    "peak RSS MB (median)": round(median([r.max_rss_mb for r in rs]), 1),
                    "exit": rs[-1].returncode,
                    "findings": found,
                    "ratio to buf": round(ratio(walls[tool], walls["buf"]), 2) if "buf" in walls else "",
                })
            if "buf" in walls:
                value = ratio(walls["protoreg"], walls["buf"])
                targets.append({"name": f"breaking: protoreg wall / buf wall ({category})", "value": round(value, 2),
                                "target": "<= 1.0", "met": value <= 1.0})
    if buf is None:
        notes.append("buf was not found (npm install --prefix ~/.cache/protoreg-buf @bufbuild/buf@1.75.0); "
                     "only protoreg was measured.")
    return {
        "title": f"Checking: protoreg breaking vs buf breaking ({messages} messages x {fields} fields, 1% mutated)",
        "description": __doc__.split("\n\n")[1].strip() if __doc__ else "",
        "rows": rows,
        "targets": targets,
        "notes": notes,
        "buf": buf.name if buf else None,  # the binary's name only: no machine paths in results
    }


def _count_findings(tool: str, run: ProcessRun) -> int | str:
    try:
        if tool == "protoreg":
            data = json.loads(run.stdout)
            reports = data if isinstance(data, list) else [data]
            return sum(len(r.get("findings", [])) for r in reports)
        return sum(1 for line in run.stdout.splitlines() if line.strip().startswith("{"))
    except (json.JSONDecodeError, AttributeError):
        return "?"


# -- check on a big registry ------------------------------------------------------------------


def build_check_registry(root: Path, models: int, fields: int, releases: int) -> tuple[str, Path]:
    """A SQLite registry with ``releases`` releases of each of ``models`` wide models, and a
    module ``bench_check_models`` holding release ``releases + 1`` of each.

    The first model is registered release by release; the others are copies of its rows with
    the names replaced (what registering them would write, but 50x faster to build).
    """
    from protoreg.registry.database import open_registry
    from protoreg.registry.registration import register_release
    from protoreg.registry.schema import extract_schema

    url = f"sqlite:///{root}/registry.db"
    names = [f"wide_{i:02d}" for i in range(models)]
    with open_registry(url) as registry:
        for release in range(1, releases + 1):
            register_release(registry, extract_schema(wide_model(names[0], release, fields)))
        for name in names[1:]:
            clone_model(registry.engine, names[0], name)
    module_dir = root / "modules"
    write_module(module_dir, "bench_check_models", wide_module_source([(n, releases + 1) for n in names], fields))
    return url, module_dir


def _spellings(name: str) -> list[str]:
    words = name.split("_")
    return [name, " ".join(w.title() for w in words), "".join(w.title() for w in words)]


def clone_model(engine: Any, source: str, target: str) -> None:
    """Copy every row of model ``source`` as model ``target`` (names replaced, fingerprints redone)."""
    import hashlib

    from sqlalchemy import MetaData, func, select

    metadata = MetaData()
    metadata.reflect(engine)
    t = metadata.tables
    replacements = list(zip(_spellings(source), _spellings(target), strict=True))

    def rename(value: Any) -> Any:
        if isinstance(value, str):
            for old, new in replacements:
                value = value.replace(old, new)
        return value

    with engine.begin() as conn:
        def next_id(table: str) -> int:
            return int(conn.execute(select(func.coalesce(func.max(t[table].c.id), 0))).scalar()) + 1

        model = conn.execute(select(t["models"]).where(t["models"].c.name == source)).mappings().one()
        model_id = next_id("models")
        conn.execute(t["models"].insert(), [{**{k: rename(v) for k, v in model.items()}, "id": model_id}])
        ids: dict[str, dict[int, int]] = {"releases": {}, "messages": {}, "enums": {}}
        for table in ("releases", "messages", "enums"):
            rows = conn.execute(select(t[table]).where(t[table].c.model_id == model["id"])).mappings().all()
            start = next_id(table)
            copies = []
            for offset, row in enumerate(rows):
                ids[table][row["id"]] = start + offset
                copy = {k: rename(v) for k, v in row.items()}
                copy.update(id=start + offset, model_id=model_id)
                if table == "releases":
                    schema = json.loads(copy["schema_json"])
                    schema.pop("version")
                    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"))
                    copy["fingerprint"] = hashlib.sha256(canonical.encode()).hexdigest()
                copies.append(copy)
            if copies:
                conn.execute(t[table].insert(), copies)
        for table, parent, parent_table in (("fields", "message_id", "messages"), ("enum_values", "enum_id", "enums"),
                                            ("reservations", "release_id", "releases")):
            rows = conn.execute(
                select(t[table]).where(t[table].c[parent].in_(list(ids[parent_table])))
            ).mappings().all()
            start = next_id(table)
            copies = []
            for offset, row in enumerate(rows):
                copy = dict(row)
                copy.update(id=start + offset)
                copy[parent] = ids[parent_table][row[parent]]
                if "first_release_id" in copy:
                    copy["first_release_id"] = ids["releases"][row["first_release_id"]]
                copies.append(copy)
            if copies:
                conn.execute(t[table].insert(), copies)
        lineage = conn.execute(select(t["lineages"]).where(t["lineages"].c.model_id == model["id"])).mappings().one()
        conn.execute(t["lineages"].insert(), [{**lineage, "model_id": model_id}])


def run_check(smoke: bool, rounds: int) -> dict[str, Any]:
    models, fields, releases = (3, 20, 5) if smoke else (50, 200, 100)
    rows: list[dict[str, Any]] = []
    targets: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="protoreg-bench-check-") as tmp:
        root = Path(tmp)
        url, module_dir = build_check_registry(root, models, fields, releases)
        env = {**os.environ, "PYTHONPATH": f"{module_dir}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        refs = [f"bench_check_models:Model_wide_{i:02d}" for i in range(models)]
        cases = {"1 model": refs[:1], f"all {models} models": refs}
        for label, chosen in cases.items():
            argv = [_protoreg_script(), "--db", url, "--protos", str(root / "protos"), "check", *chosen]
            runs = [run_measured(argv, env=env) for _ in range(rounds)]
            wall = median([r.wall for r in runs])
            rows.append({
                "protoreg check": label,
                "wall s (median)": round(wall, 3),
                "walls s": ", ".join(f"{r.wall:.3f}" for r in runs),
                "peak RSS MB": round(median([r.max_rss_mb for r in runs]), 1),
                "exit": runs[-1].returncode,
                "verdict": _summary(runs[-1]),
            })
            targets.append({"name": f"check: {label} of {models} x {fields} fields x {releases} releases, wall s",
                            "value": round(wall, 3), "target": "< 1.0", "met": wall < 1.0})
        bare = run_measured([sys.executable, "-c", "pass"])
        imports = run_measured([sys.executable, "-c", "import protoreg.cli, sqlalchemy, pydantic"], env=env)
        rows.append({"protoreg check": "(python -c pass)", "wall s (median)": round(bare.wall, 3)})
        rows.append({"protoreg check": "(import protoreg.cli, sqlalchemy, pydantic)",
                     "wall s (median)": round(imports.wall, 3)})
    return {
        "title": f"Checking: protoreg check on a registry of {models} models x {fields} fields x {releases} releases",
        "description": __doc__.split("\n\n")[2].strip() if __doc__ else "",
        "rows": rows,
        "targets": targets,
    }
