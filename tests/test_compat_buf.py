"""Differential test: ``protoreg breaking`` against ``buf breaking``, the reference checker.

Many before/after proto pairs are generated from a seeded random API (messages with scalar,
enum, message, map, repeated, optional and oneof fields, reserved ranges and names, an enum, a
service) and a few random changes. Both are compiled once with ``grpc_tools.protoc`` into
FileDescriptorSet files that both tools read, and for the WIRE and WIRE_JSON categories the
pass/fail verdicts must agree, and so must the rules: every rule declares the buf rules that report
the same change (``buf=`` in ``registry/compat/rules.py``), so each buf rule that fires must be
named by a protoreg finding and each protoreg finding must be matched by one of its buf rules.
buf comes from the npm registry (``@bufbuild/buf``), installed into a cache directory outside the
repository; the test is skipped only where npm is missing. Deliberate differences are documented
in docs/compat.md; none applies to what is generated here.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

import pytest

from protoreg.registry.compat.descriptors import load_tree
from protoreg.registry.compat.engine import check_trees
from protoreg.registry.compat.findings import Report
from protoreg.registry.compat.rules import RULES, RULES_BY_ID
from protoreg.registry.protoc import ProtocError, compile_descriptor_set
from protoreg.registry.typemap import SCALAR_TYPES
from tests.buf_testdata import buf_binary as installed_buf

CASES = int(os.environ.get("PROTOREG_BUF_CASES", "80"))
SCALARS = SCALAR_TYPES


def buf_binary() -> Path:
    """buf from the npm registry, installed once into a cache directory outside the repository."""
    binary = installed_buf()
    if binary is None:
        pytest.skip("npm is not installed, so buf (@bufbuild/buf on the npm registry) cannot be installed")
    return binary


# -- a small API model, rendered to proto3 ---------------------------------------------------


@dataclass
class F:
    name: str
    number: int
    type: str  # a scalar, "Color", "Inner", or "map<string, X>"
    label: str = ""  # "", "optional", "repeated"
    oneof: str | None = None
    json_name: str | None = None


@dataclass
class M:
    name: str
    fields: list[F]
    reserved_numbers: list[tuple[int, int]] = field(default_factory=list)
    reserved_names: list[str] = field(default_factory=list)


@dataclass
class Api:
    package: str
    messages: list[M]
    colors: list[tuple[str, int]]
    color_reserved_numbers: list[int]
    color_reserved_names: list[str]
    rpcs: list[tuple[str, str, str, bool, bool]]


def render(api: Api) -> str:
    lines = ['syntax = "proto3";', f"package {api.package};", "", "service Shop {"]
    for name, req, resp, cs, ss in api.rpcs:
        lines.append(f"  rpc {name}({'stream ' if cs else ''}{req}) returns ({'stream ' if ss else ''}{resp});")
    lines.append("}")
    for m in api.messages:
        lines.append(f"message {m.name} {{")
        if m.name == "Item":
            lines.append("  message Inner { double v = 1; }")
        oneofs: dict[str, list[F]] = {}
        for f in m.fields:
            option = f' [json_name = "{f.json_name}"]' if f.json_name else ""
            if f.oneof:
                oneofs.setdefault(f.oneof, []).append(f)
                continue
            label = f"{f.label} " if f.label else ""
            lines.append(f"  {label}{_type(f)} {f.name} = {f.number}{option};")
        for name, members in oneofs.items():
            lines.append(f"  oneof {name} {{")
            for f in members:
                option = f' [json_name = "{f.json_name}"]' if f.json_name else ""
                lines.append(f"    {_type(f)} {f.name} = {f.number}{option};")
            lines.append("  }")
        if m.reserved_numbers:
            lines.append(f"  reserved {', '.join(str(a) if a == b else f'{a} to {b}' for a, b in m.reserved_numbers)};")
        if m.reserved_names:
            lines.append(f"  reserved {', '.join(json.dumps(n) for n in m.reserved_names)};")
        lines.append("}")
    lines.append("enum Color {")
    for name, number in api.colors:
        lines.append(f"  {name} = {number};")
    if api.color_reserved_numbers:
        lines.append(f"  reserved {', '.join(map(str, api.color_reserved_numbers))};")
    if api.color_reserved_names:
        lines.append(f"  reserved {', '.join(json.dumps(n) for n in api.color_reserved_names)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _type(f: F) -> str:
    return "Item.Inner" if f.type == "Inner" else f.type


def base_api(rng: random.Random) -> Api:
    messages = []
    for name in ("GetRequest", "GetResponse", "Item"):
        count = rng.randint(2, 5)
        fields = [F(f"{name[0].lower()}{i}", i, rng.choice(SCALARS + ("Color", "Inner"))) for i in range(1, count + 1)]
        for f in fields:
            f.label = rng.choice(("", "", "optional", "repeated"))
        if rng.random() < 0.4:
            fields[-1] = replace(fields[-1], type=f"map<string, {rng.choice(SCALARS[:6])}>", label="")
        if rng.random() < 0.4 and not fields[0].type.startswith("map"):
            fields[0] = replace(fields[0], label="", oneof="choice")
        reserved = [(20, 20), (30, 35)] if rng.random() < 0.5 else []
        messages.append(M(name, fields, reserved, ["old_name"] if rng.random() < 0.5 else []))
    messages[1].fields.append(F("items", 99, "Item", "repeated"))
    colors = [("COLOR_UNSPECIFIED", 0), ("COLOR_RED", 1), ("COLOR_GREEN", 2), ("COLOR_BLUE", 3)]
    rpcs = [
        ("Get", "GetRequest", "GetResponse", False, False),
        ("Watch", "GetRequest", "GetResponse", False, True),
    ]
    return Api("shop.v1", messages, colors, [9] if rng.random() < 0.5 else [], ["COLOR_OLD"], rpcs)


def _copy(api: Api) -> Api:
    return Api(
        api.package,
        [
            M(m.name, [replace(f) for f in m.fields], list(m.reserved_numbers), list(m.reserved_names))
            for m in api.messages
        ],
        list(api.colors),
        list(api.color_reserved_numbers),
        list(api.color_reserved_names),
        list(api.rpcs),
    )


def mutate(api: Api, rng: random.Random) -> str:
    """Apply one random change to ``api`` in place; returns what it did."""
    m = rng.choice(api.messages)
    plain = [f for f in m.fields if not f.type.startswith("map") and f.name != "items"]
    kind = rng.choice(
        (
            "add",
            "remove",
            "rename",
            "retype",
            "label",
            "oneof",
            "json_name",
            "enum_add",
            "enum_remove",
            "enum_rename",
            "drop_reserved",
            "rpc",
            "package",
            "map",
        )
    )
    used = {f.number for f in m.fields} | {n for a, b in m.reserved_numbers for n in range(a, b + 1)}
    if kind == "add":
        number = min(n for n in range(1, 60) if n not in used)
        m.fields.append(F(f"added{number}", number, rng.choice(SCALARS), rng.choice(("", "optional", "repeated"))))
    elif kind == "remove" and plain:
        f = rng.choice(plain)
        m.fields.remove(f)
        mode = rng.choice(("none", "number", "name", "both"))
        if mode in ("number", "both"):
            m.reserved_numbers.append((f.number, f.number))
        if mode in ("name", "both"):
            m.reserved_names.append(f.name)
        kind += f" {f.name} reserving {mode}"
    elif kind == "rename" and plain:
        f = rng.choice(plain)
        f.name = f"{f.name}_renamed"
    elif kind == "retype" and plain:
        f = rng.choice(plain)
        f.type = rng.choice(SCALARS + ("Color", "Inner"))
        if f.oneof and f.type == "Inner":
            f.type = "string"
        kind += f" {f.name} to {f.type}"
    elif kind == "label" and plain:
        f = rng.choice([x for x in plain if not x.oneof] or plain)
        if not f.oneof:
            f.label = rng.choice([x for x in ("", "optional", "repeated") if x != f.label])
            kind += f" {f.name} to {f.label or 'implicit'}"
    elif kind == "oneof" and plain:
        f = rng.choice(plain)
        if f.oneof:
            f.oneof = None
        elif f.label != "repeated":
            f.label, f.oneof = "", rng.choice(("choice", "other"))
    elif kind == "json_name" and plain:
        f = rng.choice(plain)
        f.json_name = f"j{f.name}X"
    elif kind == "enum_add":
        number = max(n for _, n in api.colors) + 1 + (1 if number_taken(api) else 0)
        api.colors.append((f"COLOR_{number}", number))
    elif kind == "enum_remove" and len(api.colors) > 1:
        name, number = rng.choice(api.colors[1:])
        api.colors.remove((name, number))
        mode = rng.choice(("none", "number", "name", "both"))
        if mode in ("number", "both"):
            api.color_reserved_numbers.append(number)
        if mode in ("name", "both"):
            api.color_reserved_names.append(name)
    elif kind == "enum_rename" and len(api.colors) > 1:
        index = rng.randrange(1, len(api.colors))
        name, number = api.colors[index]
        api.colors[index] = (f"{name}_NEW", number)
    elif kind == "drop_reserved":
        if m.reserved_numbers and rng.random() < 0.5:
            m.reserved_numbers.pop()
        elif m.reserved_names:
            m.reserved_names.pop()
        elif api.color_reserved_numbers:
            api.color_reserved_numbers.pop()
    elif kind == "rpc":
        name, req, resp, cs, ss = api.rpcs[1]
        choice = rng.choice(("request", "stream"))
        api.rpcs[1] = (name, "Item", resp, cs, ss) if choice == "request" else (name, req, resp, not cs, ss)
        kind += f" {choice}"
    elif kind == "package":
        api.package = "shop.v1beta"
    elif kind == "map":
        maps = [f for f in m.fields if f.type.startswith("map")]
        if maps:
            maps[0].type = f"map<string, {rng.choice(SCALARS[:6])}>"
    return kind


def number_taken(api: Api) -> bool:
    top = max(n for _, n in api.colors) + 1
    return top in api.color_reserved_numbers


def compile_api(api: Api, root: Path) -> Path | None:
    (root / "shop").mkdir(parents=True, exist_ok=True)
    (root / "shop" / "api.proto").write_text(render(api), encoding="utf-8")
    try:
        descriptor_set = compile_descriptor_set(root)
    except ProtocError:
        return None  # the random change made an invalid file (a clash protoc refuses): skip it
    out = root.with_suffix(".binpb")
    out.write_bytes(descriptor_set.SerializeToString())
    return out


def buf_breaking(buf: Path, new: Path, old: Path, category: str) -> tuple[bool, set[str]]:
    """buf's verdict (passed or not) and the IDs of the buf rules that fired."""
    config = json.dumps({"version": "v2", "breaking": {"use": [category]}})
    result = subprocess.run(
        [str(buf), "breaking", str(new), "--against", str(old), "--config", config, "--error-format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode not in (0, 100):
        raise AssertionError(f"buf failed ({result.returncode}): {result.stderr or result.stdout}")
    fired = {json.loads(line)["type"] for line in result.stdout.splitlines() if line.strip()}
    return result.returncode == 0, fired


@cache
def buf_categories(buf: Path) -> dict[str, frozenset[str]]:
    """Every buf breaking rule ID and the categories it belongs to, from buf itself."""
    listing = subprocess.run(
        [str(buf), "config", "ls-breaking-rules", "--version", "v2", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rules = (json.loads(line) for line in listing.splitlines() if line.strip())
    return {r["id"]: frozenset(r["categories"]) for r in rules}


def rule_disagreements(buf: Path, ours: Report, fired: set[str], category: str) -> list[str]:
    """Where protoreg's findings and buf's fired rules do not match through the ``buf=`` declarations.

    Only buf rules of ``category`` can fire in buf's run, so a finding is matched when one of its
    declared buf rules of that category fired; a finding whose rule declares none is protoreg's own.
    When a file changed package, buf pairs elements by full name and reports only the package;
    protoreg pairs by file and still reports what changed inside (docs/compat.md, difference 8).
    """
    categories = buf_categories(buf)
    moved_package = any(f.rule == "PACKAGE_CHANGED" for f in ours.findings)
    problems: list[str] = []
    named: set[str] = set()
    for finding in ours.findings:
        equivalents = {b for b in RULES_BY_ID[finding.rule].buf if category in categories[b]}
        named |= equivalents
        if equivalents and not equivalents & fired and not moved_package:
            problems.append(f"{finding.rule} ({finding.message}) but buf fired none of {sorted(equivalents)}")
    for rule_id in sorted(fired - named):
        problems.append(f"buf fired {rule_id}, which no protoreg finding names")
    return problems


@pytest.mark.slow
def test_breaking_agrees_with_buf_on_wire_and_wire_json(tmp_path: Path) -> None:
    buf = buf_binary()
    rng = random.Random(20261126)
    compared, skipped, failing = 0, 0, 0
    disagreements: list[str] = []
    for case in range(CASES):
        before = base_api(rng)
        after = _copy(before)
        changes = [mutate(after, rng) for _ in range(rng.choice((1, 1, 2)))]
        old = compile_api(before, tmp_path / f"c{case}" / "old")
        new = compile_api(after, tmp_path / f"c{case}" / "new")
        if old is None or new is None:
            skipped += 1
            continue
        old_tree, new_tree = load_tree(old), load_tree(new)
        for category in ("WIRE", "WIRE_JSON"):
            ours = check_trees(old_tree, new_tree, categories=[category])
            theirs, fired = buf_breaking(buf, new, old, category)
            compared += 1
            failing += not theirs
            found = [f"{f.rule}: {f.message}" for f in ours.findings]
            if ours.passed != theirs:
                disagreements.append(
                    f"case {case} {category} {changes}: protoreg passed={ours.passed} "
                    f"buf passed={theirs}; protoreg found {found}\n{render(after)}"
                )
            for problem in rule_disagreements(buf, ours, fired, category):
                disagreements.append(f"case {case} {category} {changes}: {problem}\n{render(after)}")
    assert compared >= CASES, f"too few valid pairs: {compared} verdicts, {skipped} cases skipped"
    assert 0 < failing < compared, "the generated changes should both break and not break"
    assert not disagreements, "\n\n".join(disagreements[:5])


H3 = 'syntax = "proto3";\npackage p.v1;\nservice S { rpc A(Req) returns (Resp); rpc B(Req) returns (Resp); }\n'
H2 = 'syntax = "proto2";\npackage p.v1;\nservice S { rpc A(Req) returns (Resp); }\n'
HAND_WRITTEN = {
    "message deleted": (H3 + "message Req{} message Resp{} message X{int32 a=1;}", H3 + "message Req{} message Resp{}"),
    "enum deleted": (H3 + "message Req{} message Resp{} enum E{E_0=0;}", H3 + "message Req{} message Resp{}"),
    "rpc deleted": (
        H3 + "message Req{} message Resp{}",
        H3.replace(" rpc B(Req) returns (Resp);", "") + "message Req{} message Resp{}",
    ),
    "service deleted": (
        H3 + "message Req{} message Resp{}",
        'syntax = "proto3";\npackage p.v1;\nmessage Req{} message Resp{}',
    ),
    "oneof renamed": (
        H3 + "message Req{oneof a{int32 x=1;}} message Resp{}",
        H3 + "message Req{oneof b{int32 x=1;}} message Resp{}",
    ),
    "proto2 required added": (
        H2 + "message Req{optional int32 a=1;} message Resp{}",
        H2 + "message Req{optional int32 a=1; required int32 b=2;} message Resp{}",
    ),
    "proto2 optional to required": (
        H2 + "message Req{optional int32 a=1;} message Resp{}",
        H2 + "message Req{required int32 a=1;} message Resp{}",
    ),
    "proto2 default changed": (
        H2 + "message Req{optional int32 a=1 [default=3];} message Resp{}",
        H2 + "message Req{optional int32 a=1 [default=4];} message Resp{}",
    ),
    "map key string to int32": (
        H3 + "message Req{map<string,int32> m=1;} message Resp{}",
        H3 + "message Req{map<int32,int32> m=1;} message Resp{}",
    ),
    "map key int32 to int64": (
        H3 + "message Req{map<int32,int32> m=1;} message Resp{}",
        H3 + "message Req{map<int64,int32> m=1;} message Resp{}",
    ),
    "int32 to enum": (
        H3 + "message Req{int32 a=1;} message Resp{} enum E{E_0=0;}",
        H3 + "message Req{E a=1;} message Resp{} enum E{E_0=0;}",
    ),
    "optional added": (
        H3 + "message Req{int32 a=1;} message Resp{}",
        H3 + "message Req{optional int32 a=1;} message Resp{}",
    ),
    "message type changed": (
        H3 + "message Req{X a=1;} message Resp{} message X{} message Y{}",
        H3 + "message Req{Y a=1;} message Resp{} message X{} message Y{}",
    ),
    "repeated entry to map": (
        H3 + "message Req{repeated Req.MEntry m=1; message MEntry{string key=1; int32 value=2;}} message Resp{}",
        H3 + "message Req{map<string,int32> m=1;} message Resp{}",
    ),
    "enum moved with its values": (
        H3 + "message Req{E a=1;} message Resp{} enum E{E_0=0;} message N{enum E{E_0=0; E_1=1;}}",
        H3 + "message Req{N.E a=1;} message Resp{} enum E{E_0=0;} message N{enum E{E_0=0; E_1=1;}}",
    ),
    "client streaming": (
        H3 + "message Req{} message Resp{}",
        H3.replace("rpc B(Req)", "rpc B(stream Req)") + "message Req{} message Resp{}",
    ),
    "response type": (
        H3 + "message Req{} message Resp{} message R2{}",
        H3.replace("rpc B(Req) returns (Resp)", "rpc B(Req) returns (R2)")
        + "message Req{} message Resp{} message R2{}",
    ),
    "package changed": (
        H3 + "message Req{} message Resp{}",
        H3.replace("p.v1", "p.v2") + "message Req{} message Resp{}",
    ),
    "nested message moved out": (
        H3 + "message Req{Req.In a=1; message In{int32 v=1;}} message Resp{}",
        H3 + "message Req{In a=1;} message In{int32 v=1;} message Resp{}",
    ),
    "json_name set": (
        H3 + "message Req{int32 a=1;} message Resp{}",
        H3 + 'message Req{int32 a=1 [json_name="b"];} message Resp{}',
    ),
    "enum alias added": (
        H3 + "message Req{} message Resp{} enum E{E_0=0; E_1=1;}",
        H3 + "message Req{} message Resp{} enum E{option allow_alias=true; E_0=0; E_1=1; E_ONE=1;}",
    ),
    "enum alias removed": (
        H3 + "message Req{} message Resp{} enum E{option allow_alias=true; E_0=0; E_1=1; E_ONE=1;}",
        H3 + "message Req{} message Resp{} enum E{E_0=0; E_1=1;}",
    ),
    "reserved range shrunk": (
        H3 + "message Req{reserved 5 to max;} message Resp{}",
        H3 + "message Req{reserved 5 to 100;} message Resp{}",
    ),
    "enum reservations removed": (
        H3 + 'message Req{} message Resp{} enum E{E_0=0; reserved 3, 5 to 9; reserved "X";}',
        H3 + "message Req{} message Resp{} enum E{E_0=0; reserved 3;}",
    ),
    "response field removed, reserved": (
        H3 + "message Req{} message Resp{int32 a=1; string b=2;}",
        H3 + 'message Resp{int32 a=1; reserved 2; reserved "b";} message Req{}',
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(HAND_WRITTEN))
def test_hand_written_pairs_agree_with_buf(tmp_path: Path, case: str) -> None:
    buf = buf_binary()
    paths = []
    for side, text in zip(("old", "new"), HAND_WRITTEN[case], strict=True):
        root = tmp_path / side
        root.mkdir()
        (root / "api.proto").write_text(text + "\n", encoding="utf-8")
        out = tmp_path / f"{side}.binpb"
        out.write_bytes(compile_descriptor_set(root).SerializeToString())
        paths.append(out)
    old, new = paths
    for category in ("WIRE", "WIRE_JSON"):
        ours = check_trees(load_tree(old), load_tree(new), categories=[category])
        passed, fired = buf_breaking(buf, new, old, category)
        assert ours.passed == passed, f"{case} {category}: protoreg found {[f.message for f in ours.findings]}"
        assert not rule_disagreements(buf, ours, fired, category), case


FIXTURES = Path(__file__).resolve().parent / "compat_fixtures"


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()))
def test_fixture_findings_match_buf_rule_by_rule(tmp_path: Path, case: str) -> None:
    """Every fixture of tests/compat_fixtures, before -> after, through both tools."""
    buf = buf_binary()
    paths = {}
    for side in ("before", "after"):
        paths[side] = tmp_path / f"{side}.binpb"
        paths[side].write_bytes(compile_descriptor_set(FIXTURES / case / side).SerializeToString())
    for category in ("WIRE", "WIRE_JSON"):
        ours = check_trees(load_tree(paths["before"]), load_tree(paths["after"]), categories=[category])
        passed, fired = buf_breaking(buf, paths["after"], paths["before"], category)
        assert ours.passed == passed, (case, category)
        assert not rule_disagreements(buf, ours, fired, category), (case, category)


@pytest.mark.slow
def test_every_declared_buf_rule_exists() -> None:
    known = buf_categories(buf_binary())
    for rule in RULES:
        assert set(rule.buf) <= set(known), (rule.id, set(rule.buf) - set(known))
