"""The registry browser in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright with the system browser (never ``playwright install``).

The site comes from ``protoreg site`` on a registry with a rename, a removal, a type change and an
enum change; the ledger cells the browser shows are checked against ``protoreg fields --format
json``, a diff is opened through the picker, a ``.proto`` is read and downloaded, and the try-it
form's JSON body is caught with Playwright's request routing on a local static server. Without
Chromium the tests skip, except in CI (``CI=true``), where they fail. Screenshots go to each
test's temporary directory. The try-it forms are also submitted against a live ``protoreg serve
--http-address ... --site DIR`` and read what the server answered.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service_support import REPO, start_serve, stop_process
from tests.site_support import MODULE, VERSIONS, invoke, site_registry, write_models_module  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the browser tests (.ci/run installs chromium)")
    pytest.skip(reason)


def chromium_path() -> str:
    found = os.environ.get("PROTOREG_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        _unavailable("no chromium on PATH (apt-get install chromium)")
    return str(found)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A fresh headless Chromium context with its own profile directory."""
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=executable, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 900}, accept_downloads=True,
        )
        try:
            yield context
        finally:
            context.close()


def open_page(context: Any, url: str) -> Any:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.errors = errors
    page.goto(url)
    return page


def fields_json(db: str, tmp_path: Path, version: str) -> dict[str, Any]:
    result = invoke(db, tmp_path / "protos", "fields", "loan_model", "--version", version, "--format", "json")
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.output))


CELLS_SCRIPT = """tables => Array.from(tables[0].querySelectorAll("tbody.section")).map(body => ({
  scope: body.dataset.scope, kind: body.dataset.kind,
  exists: Array.from(body.querySelectorAll("tr.section-head td")).map(td => td.dataset.exists === "true"),
  names: Array.from(body.querySelectorAll("tr.reserved-names td")).map(td => td.dataset.names),
  rows: Array.from(body.querySelectorAll("tr.row")).map(tr => ({
    number: Number(tr.dataset.number),
    cells: Array.from(tr.querySelectorAll("td.cell")).map(td => ({
      version: td.dataset.version, state: td.dataset.state, name: td.dataset.name, type: td.dataset.type,
      label: td.dataset.label, required: td.dataset.required === "true", reserved: td.dataset.reserved === "true",
      text: td.innerText, background: getComputedStyle(td).backgroundColor,
    })),
  })),
}))"""


def test_ledger_cells_agree_with_protoreg_fields(site_registry: str, browser: Any, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "site"
    assert invoke(site_registry, tmp_path / "protos", "site", "--out", str(out)).exit_code == 0
    page = open_page(browser, (out / "index.html").as_uri())
    page.click("#model-loan_model h2 a")
    page.wait_for_selector("table.ledger")
    assert page.url.endswith("/loan_model/index.html")
    sections = page.eval_on_selector_all("table.ledger", CELLS_SCRIPT)
    headers = page.eval_on_selector_all("table.ledger thead th.release", "ths => ths.map(th => th.dataset.version)")
    assert headers == list(VERSIONS)

    for column, version in enumerate(VERSIONS):
        fields = fields_json(site_registry, tmp_path, version)
        shown_messages = {s["scope"] for s in sections if s["kind"] == "message" and s["exists"][column]}
        assert shown_messages == {m["name"] for m in fields["messages"]}, version
        for message in fields["messages"] + fields["enums"]:
            section = next(s for s in sections if s["scope"] == message["name"])
            cells = {r["number"]: r["cells"][column] for r in section["rows"]}
            assert all(c["version"] == version for c in cells.values())
            items = message.get("fields", message.get("values"))
            present = {n: c for n, c in cells.items() if c["state"] in ("added", "renamed", "changed", "unchanged")}
            assert sorted(present) == sorted(f["number"] for f in items), (version, message["name"])
            for item in items:
                c = present[item["number"]]
                assert c["name"] == item["name"] and c["name"] in c["text"]
                if "type" in item:
                    assert (c["type"], c["label"], c["required"]) == (item["type"], item["label"], item["required"])
            assert sorted(n for n, c in cells.items() if c["reserved"]) == message["reserved_numbers"]
            assert section["names"][column] == ",".join(message["reserved_names"])

    def states(scope: str, number: int) -> list[str]:
        section = next(s for s in sections if s["scope"] == scope)
        return [c["state"] for c in next(r for r in section["rows"] if r["number"] == number)["cells"]]

    assert states("PredictRequest", 2)[1:3] == ["unchanged", "renamed"]  # name -> full_name in 2.0.0
    assert states("PredictRequest", 1)[2:4] == ["unchanged", "removed"]  # age int64 -> string in 3.0.0
    assert states("PredictRequest", 7)[2:4] == ["absent", "added"]  # ... under a fresh number
    assert states("PredictRequest", 4)[3:5] == ["unchanged", "changed"]  # count int64 -> uint64 in 4.0.0
    assert states("PredictResponse", 2)[2:5] == ["unchanged", "removed", "reserved"]
    assert states("Tier", 2)[2:4] == ["unchanged", "removed"] and states("Tier", 3)[:2] == ["absent", "added"]

    # The states are coloured: each has its own background, and the legend shows them all.
    request = next(s for s in sections if s["scope"] == "PredictRequest")
    by_state = {c["state"]: c["background"] for r in request["rows"] for c in r["cells"]}
    assert {"added", "renamed", "changed", "unchanged", "removed", "reserved"} <= set(by_state)
    assert len({by_state[s] for s in ("added", "renamed", "changed", "removed", "unchanged")}) == 5
    legend = page.eval_on_selector_all(".legend .sample", "spans => spans.map(s => s.textContent)")
    assert legend == ["added", "renamed", "changed", "unchanged", "removed", "reserved"]

    page.check("#ledger-eventful")
    visible = page.eval_on_selector_all(
        "table.ledger tbody.section[data-scope=PredictRequest] tr.row",
        "rows => rows.filter(r => r.offsetParent !== null).map(r => Number(r.dataset.number))")
    assert visible == [1, 2, 4]
    page.uncheck("#ledger-eventful")
    page.screenshot(path=str(tmp_path / "ledger.png"), full_page=True)
    assert (tmp_path / "ledger.png").stat().st_size > 10_000
    assert page.errors == []


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass


@pytest.fixture
def static_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local static file server on a free loopback port, serving ``tmp_path/served``."""
    root = tmp_path / "served"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_diff_and_proto_pages_under_a_base_path(site_registry: str, browser: Any,  # noqa: F811
                                                static_server: tuple[str, Path], tmp_path: Path) -> None:
    base, root = static_server
    out = root / "some" / "base"
    assert invoke(site_registry, tmp_path / "protos", "site", "--out", str(out)).exit_code == 0
    page = open_page(browser, f"{base}/some/base/loan_model/diff/index.html")
    page.select_option("form.diff-chooser select[name=from]", "4.0.0")
    page.select_option("form.diff-chooser select[name=to]", "1.1.0")  # picked backwards: shown oldest first
    with page.expect_navigation():
        page.click("form.diff-chooser button")
    assert page.url.endswith("/loan_model/diff/1.1.0_4.0.0.html")
    expected = json.loads(invoke(site_registry, tmp_path / "protos", "diff", "loan_model", "1.1.0", "4.0.0",
                                 "--format", "json").output)
    rules = page.eval_on_selector_all("table.findings tbody tr", "rows => rows.map(r => r.dataset.rule)")
    assert rules == [f["rule"] for f in expected["findings"]] and rules
    messages = page.eval_on_selector_all("table.findings tbody tr td:last-child", "tds => tds.map(td => td.innerText)")
    assert messages == [f["message"] for f in expected["findings"]]
    changed = page.eval_on_selector_all(
        "table.field-changes tbody tr",
        "rows => rows.map(r => [r.dataset.scope, Number(r.dataset.number), r.dataset.state])")
    assert ["PredictRequest", 2, "renamed"] in changed and ["PredictRequest", 1, "removed"] in changed
    assert ["PredictRequest", 4, "changed"] in changed and ["Tier", 2, "removed"] in changed
    page.screenshot(path=str(tmp_path / "diff.png"), full_page=True)

    page.goto(f"{base}/some/base/loan_model/releases.html")
    with page.expect_navigation():
        page.click("#release-3\\.0\\.0 a[href='proto/3.0.0.html']")
    text = page.inner_text("pre.proto")
    pinned = tmp_path / "pinned"
    assert invoke(site_registry, tmp_path / "protos", "render", "--release", "loan_model==3.0.0",
                  "--out", str(pinned)).exit_code == 0
    rendered = (pinned / "loan_model" / "v3" / "loan_model.proto").read_text()
    assert text.strip() == rendered.strip()
    # (from file:// Chromium opens the file instead: the download attribute needs an origin)
    with page.expect_download() as download_info:
        page.click("a.download")
    download = download_info.value
    assert download.suggested_filename == "loan_model.proto"
    assert Path(download.path()).read_text() == rendered
    assert page.errors == []


def test_try_it_form_posts_the_schema_as_connect_json(site_registry: str, browser: Any,  # noqa: F811
                                                      static_server: tuple[str, Path], tmp_path: Path) -> None:
    base, root = static_server
    site = root / "registry"
    result = invoke(site_registry, tmp_path / "protos", "site", "--out", str(site), "--server-url", base + "/api")
    assert result.exit_code == 0, result.output
    page = open_page(browser, f"{base}/registry/loan_model/try.html")
    sent: list[dict[str, Any]] = []
    answers = [
        (200, {"score": 0.25}),
        (400, {"code": "invalid_argument", "message": "invalid request: fullName: Field required",
               "details": [{"type": "google.rpc.BadRequest", "value": "", "debug": {}}]}),
    ]

    def handle(route: Any) -> None:
        request = route.request
        sent.append({"method": request.method, "url": request.url, "headers": request.headers,
                     "body": json.loads(request.post_data)})
        status, body = answers[len(sent) - 1]
        route.fulfill(status=status, content_type="application/json", body=json.dumps(body))

    page.route(f"{base}/api/**", handle)
    form = page.locator("#try-v4 form.try-it")
    form.locator("[data-json-name=age]").fill("42 years")
    form.locator("[data-json-name=fullName]").fill("Ada Lovelace")
    form.locator("[data-json-name=tier]").select_option("TIER_GOLD")
    form.locator("[data-json-name=count]").fill("18446744073709551615")  # uint64's largest: only a string keeps it
    form.locator("[data-json-name=tags]").fill('["a", "b"]')
    form.locator("input.token").fill("s3cret")
    form.locator("button[type=submit]").click()
    page.wait_for_function("document.querySelector('#try-v4 pre.response').textContent.startsWith('HTTP 200')")
    assert sent[0]["method"] == "POST"
    assert sent[0]["url"] == f"{base}/api/loan_model.v4.LoanModelService/Predict"
    assert sent[0]["headers"]["content-type"] == "application/json"
    assert sent[0]["headers"]["connect-protocol-version"] == "1"
    assert sent[0]["headers"]["authorization"] == "Bearer s3cret"
    assert sent[0]["body"] == {"age": "42 years", "fullName": "Ada Lovelace", "tier": "TIER_GOLD",
                               "count": "18446744073709551615", "tags": ["a", "b"]}  # note: empty, left out
    assert json.loads(form.locator("pre.response").inner_text().split("\n", 1)[1]) == {"score": 0.25}

    form.locator("[data-json-name=fullName]").fill("")
    form.locator("button[type=submit]").click()
    page.wait_for_function("document.querySelector('#try-v4 pre.response').textContent.startsWith('HTTP 400')")
    assert "fullName" not in sent[1]["body"]
    assert "invalid_argument: invalid request: fullName: Field required" in form.locator("pre.response").inner_text()

    # Bad JSON in a list field is caught before anything is sent.
    form.locator("[data-json-name=tags]").fill("[1,")
    form.locator("button[type=submit]").click()
    assert form.locator("pre.response").inner_text().startswith("Not sent: tags is not valid JSON")
    assert len(sent) == 2
    page.screenshot(path=str(tmp_path / "try.png"), full_page=True)

    # The v1 form (an older major line) builds its own request: int64 as a string, the old field name.
    older = page.locator("#try-v1")
    older.locator("summary").click()
    older.locator("[data-json-name=age]").fill("7")
    older.locator("[data-json-name=name]").fill("Bo")
    preview = older.locator("pre.request-preview").inner_text()
    assert json.loads(preview.split("\n\n", 1)[0]) == {"age": "7", "name": "Bo"}
    assert f"curl -X POST '{base}/api/loan_model.v1.LoanModelService/Predict'" in preview
    # Chromium logs the 400 answer; nothing else went wrong
    assert page.errors == ["Failed to load resource: the server responded with a status of 400 (Bad Request)"]


def test_try_it_form_against_a_live_server(site_registry: str, browser: Any, tmp_path: Path) -> None:  # noqa: F811
    """``protoreg serve --http-address ... --site DIR``: the pages come from the server, the form
    posts to it (same origin) and shows what the model answered, or the server's error."""
    site = tmp_path / "site"
    assert invoke(site_registry, tmp_path / "protos", "site", "--out", str(site)).exit_code == 0
    modules = write_models_module(tmp_path / "modules")
    printed: list[str] = []
    process, address = start_serve(tmp_path / "protos", [f"{MODULE}:V4_0_1", "iris_model"], "--http-address",
                                   "127.0.0.1:0", "--site", str(site), path=[modules], printed=printed)
    try:
        http_line = next(line for line in printed if line.startswith("http on "))
        assert http_line.endswith("(registry browser at /)")
        base = http_line.split()[2]
        page = open_page(browser, f"{base}/")
        served = page.eval_on_selector_all(".line.served", "lines => lines.map(l => l.textContent.trim())")
        assert served == ["iris_model.v1: 1.0.0 served", "loan_model.v4: 4.0.1 served"]
        page.click("#model-loan_model a[href='loan_model/try.html']")
        page.wait_for_selector("#try-v4 form.try-it")
        assert page.is_disabled("#try-v3 button[type=submit]")  # only 4.0.1 of loan_model is served
        form = page.locator("#try-v4 form.try-it")
        form.locator("[data-json-name=age]").fill("42 years")
        form.locator("[data-json-name=fullName]").fill("Ada Lovelace")
        form.locator("[data-json-name=tier]").select_option("TIER_GOLD")
        form.locator("[data-json-name=count]").fill("18446744073709551615")  # uint64's largest, as a string
        form.locator("[data-json-name=tags]").fill('["a", "b"]')
        form.locator("button[type=submit]").click()
        page.wait_for_function("document.querySelector('#try-v4 pre.response').textContent.startsWith('HTTP ')")
        answer = form.locator("pre.response").inner_text()
        assert answer.startswith("HTTP 200"), answer
        assert json.loads(answer.split("\n", 1)[1]) == {"score": 7.0}  # two tags + the last digit, 5

        form.locator("[data-json-name=fullName]").fill("")
        form.locator("button[type=submit]").click()
        page.wait_for_function("document.querySelector('#try-v4 pre.response').textContent.startsWith('HTTP 400')")
        refusal = form.locator("pre.response").inner_text()
        assert "invalid_argument: invalid request: full_name: Field required" in refusal
        details = json.loads(refusal.split("\n\n", 1)[1])["details"]
        assert details[0]["debug"] == {"fieldViolations": [{"field": "full_name", "description": "Field required"}]}
        page.screenshot(path=str(tmp_path / "try-live.png"), full_page=True)
        assert (tmp_path / "try-live.png").stat().st_size > 10_000

        iris = open_page(browser, f"{base}/iris_model/try.html")
        for name, value in (("sepalLength", "5.1"), ("sepalWidth", "3.5"), ("petalLength", "1.4"), ("petalWidth", "0")):
            iris.fill(f"#try-v1 [data-json-name={name}]", value)
        iris.click("#try-v1 button[type=submit]")
        iris.wait_for_function("document.querySelector('#try-v1 pre.response').textContent.startsWith('HTTP ')")
        assert json.loads(iris.inner_text("#try-v1 pre.response").split("\n", 1)[1]) == {"species": "SPECIES_SETOSA"}
        assert iris.errors == []
        # Chromium logs the 400 answer; nothing else went wrong
        assert page.errors == ["Failed to load resource: the server responded with a status of 400 (Bad Request)"]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        stop_process(process)


def test_the_root_without_a_site_tries_each_served_line(browser: Any, tmp_path: Path) -> None:
    """Without --site, / lists what is served with a JSON form per line, posting to the server."""
    protos = tmp_path / "proto_versions"
    shutil.copytree(REPO / "proto_versions", protos)
    printed: list[str] = []
    process, _address = start_serve(protos, ["iris_model"], "--http-address", "127.0.0.1:0", printed=printed)
    try:
        base = next(line for line in printed if line.startswith("http on ")).split()[2]
        page = open_page(browser, f"{base}/")
        assert "protoreg site --out DIR" in page.inner_text("p.note.off")
        body = page.locator("#try-iris_model-v1 textarea[data-body]")
        assert json.loads(body.input_value()) == {"sepalLength": 0.0, "sepalWidth": 0.0, "petalLength": 0.0,
                                                  "petalWidth": 0.0}
        body.fill(json.dumps({"sepalLength": 6.3, "sepalWidth": 3.3, "petalLength": 6.0, "petalWidth": 2.5}))
        page.click("#try-iris_model-v1 button[type=submit]")
        page.wait_for_function("document.querySelector('#try-iris_model-v1 pre.response').textContent"
                               ".startsWith('HTTP ')")
        answer = page.inner_text("#try-iris_model-v1 pre.response")
        assert json.loads(answer.split("\n", 1)[1]) == {"species": "SPECIES_VIRGINICA"}, answer
        assert f"curl -X POST '{base}/iris_model.v1.IrisModelService/Predict'" in page.inner_text(
            "#try-iris_model-v1 pre.request-preview")
        page.screenshot(path=str(tmp_path / "served.png"), full_page=True)
        assert page.errors == []
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        stop_process(process)


def test_static_site_form_cannot_send_and_says_why(site_registry: str, browser: Any, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "site"
    assert invoke(site_registry, tmp_path / "protos", "site", "--out", str(out)).exit_code == 0
    page = open_page(browser, (out / "iris_model" / "try.html").as_uri())
    assert page.is_disabled("#try-v1 button[type=submit]")
    assert "no server to call" in page.inner_text("p.note.off")
    page.fill("#try-v1 [data-json-name=sepalLength]", "5.1")
    page.fill("#try-v1 [data-json-name=petalWidth]", "0")
    preview = page.inner_text("#try-v1 pre.request-preview")
    assert json.loads(preview.split("\n\n", 1)[0]) == {"sepalLength": 5.1, "petalWidth": 0}
    assert "curl -X POST 'http://HOST:PORT/iris_model.v1.IrisModelService/Predict'" in preview
    assert page.errors == []
