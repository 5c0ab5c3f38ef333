"""The registry browser without a browser: site data against the CLI's own output, ``protoreg
site`` (deterministic, relative links, safe writes) and the pages' rendering options.

The ledger must agree exactly with ``protoreg fields --format json`` and the findings with
``protoreg diff --format json``; both are read through the real CLI on a real SQLite registry.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from protoreg.registry.database import open_registry
from protoreg.registry.ledger import build_ledger
from protoreg.registry.site.data import ALL_PAIRS_UP_TO, diff_pairs, json_name, site_data
from protoreg.registry.site.pages import load_site_data, render_site, write_site
from tests.site_support import VERSIONS, invoke, site_registry  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent


def cli_json(db: str, tmp_path: Path, *args: str) -> Any:
    result = invoke(db, tmp_path / "protos", *args)
    assert result.exit_code in (0, 100), result.output
    return json.loads(result.output)


def ledger_columns(ledger: dict[str, Any], column: int) -> dict[str, Any]:
    """One release of the ledger, in the shape of ``protoreg fields --format json``."""
    messages, enums = [], []
    for section in ledger["sections"]:
        if not section["exists"][column]:
            continue
        cells = [(row["number"], row["cells"][column]) for row in section["rows"]]
        present = [(n, c) for n, c in cells if c["state"] in ("added", "renamed", "changed", "unchanged")]
        reserved = [n for n, c in cells if c["reserved"]]
        if section["kind"] == "message":
            messages.append({
                "name": section["name"],
                "fields": [{"name": c["name"], "number": n, "type": c["type"], "label": c["label"],
                            "required": c["required"]} for n, c in present],
                "reserved_numbers": reserved,
                "reserved_names": section["reserved_names"][column],
            })
        else:
            enums.append({
                "name": section["name"],
                "values": [{"name": c["name"], "number": n} for n, c in present],
                "reserved_numbers": reserved,
                "reserved_names": section["reserved_names"][column],
            })
    return {"messages": messages, "enums": enums}


def _sorted(field_map: dict[str, Any]) -> dict[str, Any]:
    """Messages and enums by name, fields and values by number: the ledger orders rows by number."""
    return {
        "messages": sorted(
            ({**m, "fields": sorted(m["fields"], key=lambda f: f["number"])} for m in field_map["messages"]),
            key=lambda m: m["name"],
        ),
        "enums": sorted(
            ({**e, "values": sorted(e["values"], key=lambda v: v["number"])} for e in field_map["enums"]),
            key=lambda e: e["name"],
        ),
    }


@pytest.fixture
def data(site_registry: str) -> dict[str, Any]:  # noqa: F811
    with open_registry(site_registry) as registry:
        return site_data(registry)


def model(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in data["models"] if m["name"] == name)


def test_ledger_agrees_with_fields_json_for_every_release(site_registry: str, data: dict[str, Any],  # noqa: F811
                                                          tmp_path: Path) -> None:
    for name, versions in (("loan_model", VERSIONS), ("iris_model", ("1.0.0",))):
        ledger = model(data, name)["ledger"]
        assert ledger["versions"] == list(versions)
        for column, version in enumerate(versions):
            fields = cli_json(site_registry, tmp_path, "fields", name, "--version", version, "--format", "json")
            for message in fields["messages"]:  # the ledger holds numbers; contracts are for `fields`
                for f in message["fields"]:
                    f.pop("contract")
            assert _sorted(ledger_columns(ledger, column)) == _sorted(fields), f"{name} {version}"


def cell(ledger: dict[str, Any], scope: str, number: int) -> list[tuple[str, str, str]]:
    section = next(s for s in ledger["sections"] if s["name"] == scope)
    row = next(r for r in section["rows"] if r["number"] == number)
    return [(c["state"], c["name"], c["type"]) for c in row["cells"]]


def test_ledger_states_for_a_rename_a_removal_a_type_change_and_an_enum_change(data: dict[str, Any]) -> None:
    ledger = model(data, "loan_model")["ledger"]
    # versions: 1.0.0, 1.1.0, 2.0.0, 3.0.0, 4.0.0, 4.0.1
    assert cell(ledger, "PredictRequest", 2) == [
        ("added", "name", "string"), ("unchanged", "name", "string"), ("renamed", "full_name", "string"),
        ("unchanged", "full_name", "string"), ("unchanged", "full_name", "string"),
        ("unchanged", "full_name", "string"),
    ]
    # age int64 -> string: the old number is removed and reserved, the field comes back under a new one
    assert [s for s, _, _ in cell(ledger, "PredictRequest", 1)] == [
        "added", "unchanged", "unchanged", "removed", "reserved", "reserved"]
    assert cell(ledger, "PredictRequest", 7)[3:] == [("added", "age", "string"), ("unchanged", "age", "string"),
                                                     ("unchanged", "age", "string")]
    assert [s for s, _, _ in cell(ledger, "PredictRequest", 7)[:3]] == ["absent"] * 3
    # a wire-compatible change keeps the number
    assert cell(ledger, "PredictRequest", 4)[3:5] == [("unchanged", "count", "int64"), ("changed", "count", "uint64")]
    # the response's label is removed in 3.0.0
    assert [s for s, _, _ in cell(ledger, "PredictResponse", 2)] == [
        "added", "unchanged", "unchanged", "removed", "reserved", "reserved"]
    # enum values: BRONZE added in 1.1.0, SILVER removed in 3.0.0
    assert [s for s, _, _ in cell(ledger, "Tier", 3)] == ["absent", "added", *["unchanged"] * 4]
    assert [s for s, _, _ in cell(ledger, "Tier", 2)] == ["added", "unchanged", "unchanged", "removed",
                                                          "reserved", "reserved"]
    tier = next(s for s in ledger["sections"] if s["name"] == "Tier")
    assert tier["reserved_names"][3] == ["TIER_SILVER"]
    renamed = next(r for r in next(s for s in ledger["sections"] if s["name"] == "PredictRequest")["rows"]
                   if r["number"] == 2)["cells"][2]
    assert renamed["before"] == "name"


def test_a_message_that_goes_away_is_removed_but_not_reserved() -> None:
    def fm(version: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
        return {"model": "m", "version": version, "package": "m.v1", "messages": messages, "enums": []}

    inner = {"name": "Inner", "fields": [{"name": "x", "number": 1, "type": "double", "label": "optional",
                                          "required": False}], "reserved_numbers": [], "reserved_names": []}
    ledger = build_ledger([fm("1.0.0", [inner]), fm("1.1.0", []), fm("1.2.0", [inner])]).to_dict()
    section = ledger["sections"][0]
    assert section["exists"] == [True, False, True]
    states = [(c["state"], c["reserved"]) for c in section["rows"][0]["cells"]]
    assert states == [("added", False), ("removed", False), ("added", False)]


def test_findings_agree_with_diff_json_for_every_pair(site_registry: str, data: dict[str, Any],  # noqa: F811
                                                      tmp_path: Path) -> None:
    loan = model(data, "loan_model")
    assert loan["all_pairs"] is True
    assert len(loan["diffs"]) == len(VERSIONS) * (len(VERSIONS) - 1) // 2
    for diff in loan["diffs"]:
        expected = cli_json(site_registry, tmp_path, "diff", "loan_model", diff["from"], diff["to"], "--format", "json")
        shown = {k: v for k, v in diff.items() if k not in ("from", "to", "summary", "note")}
        # Where an annotation points depends on the command's --protos; the site has none.
        for findings in (shown["findings"], expected["findings"]):
            for finding in findings:
                finding.pop("file")
        assert shown == expected, (diff["from"], diff["to"])
    text = invoke(site_registry, tmp_path / "protos", "diff", "loan_model", "2.0.0", "3.0.0")
    pair = next(d for d in loan["diffs"] if (d["from"], d["to"]) == ("2.0.0", "3.0.0"))
    assert text.output.strip().splitlines()[-1] == pair["summary"]


def test_releases_carry_history_and_the_bump_over_the_release_before(site_registry: str,  # noqa: F811
                                                                     data: dict[str, Any], tmp_path: Path) -> None:
    loan = model(data, "loan_model")
    history = invoke(site_registry, tmp_path / "protos", "history", "loan_model").output
    for release in loan["releases"]:
        assert f"{release['version']}  {release['date']}  {release['package']}" in history
        for change in release["changes"]:
            assert f"  {change}" in history
    assert loan["releases"][0]["bump"] is None
    assert [r["bump"]["declared"] for r in loan["releases"][1:]] == ["minor", "major", "major", "major", "patch"]
    assert loan["releases"][1]["changes"] == ["added PredictRequest.note = 6", "added Tier.TIER_BRONZE = 3"]
    assert [(line["major"], line["version"]) for line in loan["lines"]] == [
        (1, "1.1.0"), (2, "2.0.0"), (3, "3.0.0"), (4, "4.0.1")]
    assert loan["releases"][3]["proto"].startswith("// Code generated by protoreg")


def test_diff_pairs_are_every_pair_up_to_the_cap_then_linear() -> None:
    small = [f"1.{i}.0" for i in range(ALL_PAIRS_UP_TO)]
    assert len(diff_pairs(small, [small[-1]])) == ALL_PAIRS_UP_TO * (ALL_PAIRS_UP_TO - 1) // 2
    big = [f"1.{i}.0" for i in range(100)] + [f"2.{i}.0" for i in range(20)]
    current = ["1.99.0", "2.19.0"]
    pairs = diff_pairs(big, current)
    assert len(pairs) == len(set(pairs)) == 119 + 99 + 118 - 1  # consecutive + to each current, minus the overlap
    assert all(a < b for a, b in pairs)
    assert {(b - 1, b) for b in range(1, 120)} <= set(pairs)
    assert {(a, 99) for a in range(99)} <= set(pairs) and {(a, 119) for a in range(119)} <= set(pairs)


def test_try_it_describes_the_request_in_the_proto3_json_mapping(data: dict[str, Any], tmp_path: Path) -> None:
    loan = model(data, "loan_model")
    newest = loan["try_it"][-1]
    assert newest["path"] == "loan_model.v4.LoanModelService/Predict"
    kinds = {f["name"]: (f["json_name"], f["kind"], f["required"]) for f in newest["fields"]}
    assert kinds == {
        "age": ("age", "string", True),
        "full_name": ("fullName", "string", True),
        "tier": ("tier", "enum", True),
        "count": ("count", "int64", True),
        "tags": ("tags", "json", False),
        "note": ("note", "string", False),
    }
    tier = next(f for f in newest["fields"] if f["name"] == "tier")
    assert tier["options"] == ["TIER_UNSPECIFIED", "TIER_GOLD", "TIER_BRONZE"]
    assert [t["major"] for t in loan["try_it"]] == [1, 2, 3, 4]


def test_json_names_match_protoc(tmp_path: Path) -> None:
    """Our lowerCamelCase is protobuf's: compare with the json_name protoc puts in descriptors."""
    from protoreg.registry import ir
    from protoreg.registry.protoc import compile_descriptor_set
    from protoreg.registry.render import render_package

    names = ["sepal_length", "a_b_c", "x1_y2", "already", "trailing_", "double__under", "with_2d_array"]
    package = ir.Package(
        package="names.v1", model="names", version="1.0.0",
        messages=(ir.Message("PredictRequest", tuple(ir.Field(n, i + 1, "double") for i, n in enumerate(names))),),
    )
    target = tmp_path / package.proto_path
    target.parent.mkdir(parents=True)
    target.write_text(render_package(package))
    files = compile_descriptor_set(tmp_path)
    message = next(f for f in files.file if f.package == "names.v1").message_type[0]
    assert [f.json_name for f in message.field] == [json_name(f) for f in package.messages[0].fields]


# -- protoreg site ---------------------------------------------------------------------------


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key in ("href", "src") and value is not None:
                self.links.append(value)


def test_site_command_writes_a_deterministic_site_with_working_relative_links(
    site_registry: str, tmp_path: Path  # noqa: F811
) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    result = invoke(site_registry, tmp_path / "protos", "site", "--out", str(first))
    assert result.exit_code == 0, result.output
    assert re.fullmatch(rf"{re.escape(str(first))}: 2 models, \d+ pages, \d+ files \(\d+ files written or removed\)\n",
                        result.output)
    assert invoke(site_registry, tmp_path / "protos", "site", "--out", str(second)).exit_code == 0
    files = sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second).as_posix() for p in second.rglob("*") if p.is_file())
    for path in files:
        assert (first / path).read_bytes() == (second / path).read_bytes(), path
    again = invoke(site_registry, tmp_path / "protos", "site", "--out", str(first))
    assert again.output.strip().endswith("(up to date)")
    assert {"index.html", "site.json", "static/site.js", "static/site.css", "loan_model/index.html",
            "loan_model/diff/2.0.0_3.0.0.html", "loan_model/proto/3.0.0/loan_model.proto"} <= set(files)
    assert (first / "loan_model/proto/3.0.0/loan_model.proto").read_text() == \
        model(load_site_data(first), "loan_model")["releases"][3]["proto"]

    assert check_links(first) > 100


def check_links(site: Path) -> int:
    """Every href and src of every page is relative and names a file of the site; returns how many."""
    checked = 0
    for page in sorted(site.rglob("*.html")):
        parser = _Links()
        parser.feed(page.read_text())
        for link in parser.links:
            parts = urlsplit(link)
            if link.startswith("data:"):
                continue  # the inline favicon
            assert not parts.scheme and not parts.netloc and not link.startswith("/"), f"{page}: {link}"
            if not parts.path:
                continue  # a fragment on the same page
            target = (page.parent / unquote(parts.path)).resolve()
            assert target.is_file() and site.resolve() in target.parents, f"{page} links to missing {link}"
            checked += 1
    return checked


def test_beyond_the_cap_the_site_holds_the_usual_pairs_and_says_so(
    site_registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    import protoreg.registry.site.data

    monkeypatch.setattr(protoreg.registry.site.data, "ALL_PAIRS_UP_TO", 3)
    with open_registry(site_registry) as registry_:
        loan = model(site_data(registry_), "loan_model")
    assert loan["all_pairs"] is False
    pairs = {(d["from"], d["to"]) for d in loan["diffs"]}
    assert ("1.0.0", "4.0.1") in pairs and ("3.0.0", "4.0.0") in pairs and ("1.1.0", "3.0.0") in pairs
    assert ("1.0.0", "4.0.0") not in pairs  # 4.0.0 is neither the next release nor a current one
    out = tmp_path / "capped"
    write_site(out, render_site({"format": 1, "protoreg_version": "0", "models": [loan]}))
    assert check_links(out) > 50
    assert "for any other pair run <code>protoreg diff</code>" in (out / "loan_model/diff/index.html").read_text()


def test_site_refuses_a_foreign_directory_and_cleans_up_its_own(tmp_path: Path, site_registry: str) -> None:  # noqa: F811
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    result = invoke(site_registry, tmp_path / "protos", "site", "--out", str(foreign))
    assert result.exit_code == 2
    assert "is not empty and holds no site.json" in result.output and "Traceback" not in result.output
    assert (foreign / "notes.txt").read_text() == "keep me"

    out = tmp_path / "site"
    assert invoke(site_registry, tmp_path / "protos", "site", "--out", str(out)).exit_code == 0
    stale = out / "loan_model" / "diff" / "9.9.9_9.9.10.html"
    stale.write_text("left by an older registry")
    (out / "gone" / "deeper").mkdir(parents=True)
    (out / "gone" / "deeper" / "x.html").write_text("old")
    assert invoke(site_registry, tmp_path / "protos", "site", "--out", str(out)).exit_code == 0
    assert not stale.exists() and not (out / "gone").exists()
    assert (out / "index.html").is_file()

    bad = invoke(site_registry, tmp_path / "protos", "site", "--out", str(out), "--server-url", "localhost:8080")
    assert bad.exit_code == 2
    assert '--server-url wants an http(s) URL such as http://127.0.0.1:8080, not "localhost:8080"' in bad.output


def test_pages_escape_what_they_show_and_mark_what_a_server_serves(data: dict[str, Any]) -> None:
    hostile = json.loads(json.dumps(data))
    loan = model(hostile, "loan_model")
    loan["description"] = '<script>alert("x")</script>'
    loan["releases"][-1]["changes"] = ["added <img src=x onerror=alert(1)>"]
    static = render_site(hostile)
    index = static["index.html"].decode()
    assert "<script>alert" not in index and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in index
    assert "<img src=x" not in static["loan_model/releases.html"].decode()
    try_page = static["loan_model/try.html"].decode()
    assert "data-try-it-base" not in try_page and 'disabled title="no server configured"' in try_page
    assert "badge served" not in index and index.count('<span class="badge current">current</span>') == 5

    served = render_site(data, try_it_base="./", served={"loan_model": ["4.0.1"]})
    index = served["index.html"].decode()
    assert 'data-try-it-base="./"' in index
    assert re.search(r'data-major="4">loan_model\.v4: <a [^>]*>4\.0\.1</a> <span class="badge served">', index)
    assert 'data-major="3">loan_model.v3: <a href="loan_model/proto/3.0.0.html">3.0.0</a> </span>' in index
    # Only the served major line's form can send; the others say why they cannot.
    forms = re.findall(r'<details class="try" id="try-v(\d)".*?</details>', served["loan_model/try.html"].decode(),
                       re.DOTALL)
    assert forms == ["4", "3", "2", "1"]
    for major, form in re.findall(r'<details class="try" id="try-v(\d)"(.*?)</details>',
                                  served["loan_model/try.html"].decode(), re.DOTALL):
        if major == "4":
            assert "disabled" not in form and "does not serve" not in form
        else:
            assert 'disabled title="not served here"' in form
            assert f"This server does not serve major line {major} of loan_model" in form


def test_pages_need_neither_the_database_nor_sqlalchemy() -> None:
    code = (
        "import sys, protoreg.registry.site.pages as p; "
        "assert 'sqlalchemy' not in sys.modules, sorted(m for m in sys.modules if 'sqlalchemy' in m)[:3]; "
        "print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_an_empty_registry_gives_an_index_that_says_so(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'empty.db'}"
    with open_registry(db):  # a registry with its tables and no release yet
        pass
    result = invoke(db, tmp_path / "protos", "site", "--out", str(tmp_path / "site"))
    assert result.exit_code == 0, result.output
    assert "0 models, 1 pages" in result.output
    assert "The registry holds no releases yet" in (tmp_path / "site" / "index.html").read_text()


def test_site_data_round_trips_through_site_json(data: dict[str, Any], tmp_path: Path) -> None:
    files = render_site(data)
    write_site(tmp_path / "out", files)
    assert load_site_data(tmp_path / "out") == json.loads(json.dumps(data))
    assert render_site(load_site_data(tmp_path / "out")) == files
    (tmp_path / "bad.json").write_text('{"format": 99}')
    with pytest.raises(Exception, match="is not site data of format 1"):
        load_site_data(tmp_path / "bad.json")
