"""The differential runner on buf's own breaking testdata (``tests/buf_testdata.py``).

With ``PROTOREG_BUF_REPO`` naming a local checkout of github.com/bufbuild/buf, every case of
``private/bufpkg/bufcheck/testdata/breaking`` must get the same WIRE and WIRE_JSON verdict from
protoreg as from buf, or be a difference docs/compat.md lists. Without a checkout that test is
skipped (CI has none and fetches nothing). The runner itself is tested everywhere buf can be
installed, on a small checkout laid out like buf's and written here.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from tests.buf_testdata import (
    CATEGORIES,
    DIFFERENCES,
    EXCLUDED,
    REPO_ENV,
    TESTDATA,
    Run,
    buf_binary,
    cases,
    format_markdown,
    main,
    run,
)

ROOT = Path(__file__).resolve().parent.parent


def _buf() -> Path:
    buf = buf_binary()
    if buf is None:
        pytest.skip("npm is not installed, so buf (@bufbuild/buf on the npm registry) cannot be installed")
    return buf


@pytest.mark.slow
def test_every_verdict_on_bufs_testdata_agrees_or_is_documented() -> None:
    checkout = os.environ.get(REPO_ENV)
    if not checkout:
        pytest.skip(f"{REPO_ENV} names no checkout of github.com/bufbuild/buf (see docs/compat.md)")
    result = run(Path(checkout), _buf())
    assert len(result.verdicts) == len(CATEGORIES) * len(cases(Path(checkout)))
    assert result.compared > 0
    assert result.ok, format_markdown(result)


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A directory laid out like buf's repository, with three small cases of our own."""
    data = tmp_path / "buf" / TESTDATA
    proto3, proto2 = 'syntax = "proto3";\npackage a;\n', 'syntax = "proto2";\npackage a;\n'
    mode = "enum Mode { M_ZERO = 0; }\n"
    _write(data / "previous" / "json_format", {"a.proto": proto3 + mode, "b.proto": proto2})
    # The enum moves to a proto2 file: JSON format support drops from ALLOW to LEGACY_BEST_EFFORT.
    _write(data / "current" / "json_format", {"a.proto": proto3, "b.proto": proto2 + mode})
    # Module roots: the previous files live under root/, so a/a.proto pairs with a/a.proto.
    _write(data / "previous" / "roots", {"buf.yaml": "version: v1beta1\nbuild:\n  roots:\n    - root\n",
                                         "root/a/a.proto": 'syntax = "proto3";\npackage a;\nmessage M {}\n'})
    _write(data / "current" / "roots", {"a/a.proto": 'syntax = "proto3";\npackage b;\nmessage M {}\n'})
    # An RPC's idempotency level, which protoreg does not compare (docs/compat.md).
    service = 'syntax = "proto3";\npackage a;\nmessage M {}\nservice S { rpc Get(M) returns (M)BODY }\n'
    _write(data / "previous" / "idempotency", {"a.proto": service.replace("BODY", ";")})
    _write(data / "current" / "idempotency",
           {"a.proto": service.replace("BODY", " { option idempotency_level = NO_SIDE_EFFECTS; }")})
    return tmp_path / "buf"


def _verdicts(result: Run) -> dict[tuple[str, str], tuple[str, bool | None, bool | None]]:
    return {(v.case, v.category): (v.status, v.buf_passed, v.protoreg_passed) for v in result.verdicts}


@pytest.mark.slow
def test_runner_compares_case_by_case_with_module_roots(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    buf = _buf()
    result = run(checkout, buf)
    assert result.commit == "unknown"  # no git metadata in this checkout
    assert _verdicts(result) == {
        ("idempotency", "WIRE"): ("differ", False, True),
        ("idempotency", "WIRE_JSON"): ("differ", False, True),
        ("json_format", "WIRE"): ("agree", True, True),
        ("json_format", "WIRE_JSON"): ("agree", False, False),
        ("roots", "WIRE"): ("agree", False, False),
        ("roots", "WIRE_JSON"): ("agree", False, False),
    }
    assert not result.ok
    table = format_markdown(result)
    row = "| `json_format` | WIRE_JSON | fail | fail | agree | ENUM_SAME_JSON_FORMAT | ENUM_JSON_FORMAT_CHANGED |"
    assert row in table
    assert "4 agree, 0 differ deliberately, 2 disagree" in table

    # A documented difference is reported as deliberate and no longer fails the run.
    monkeypatch.setitem(DIFFERENCES, ("idempotency", "WIRE"), "not compared")
    monkeypatch.setitem(DIFFERENCES, ("idempotency", "WIRE_JSON"), "not compared")
    deliberate = run(checkout, buf, ["idempotency"])
    assert [v.status for v in deliberate.verdicts] == ["deliberate", "deliberate"] and deliberate.ok
    monkeypatch.setitem(EXCLUDED, "idempotency", "not compared")
    assert [v.status for v in run(checkout, buf, ["idempotency"]).verdicts] == ["excluded", "excluded"]


def test_runner_refuses_a_directory_that_is_no_checkout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f'"{tmp_path}" has no {TESTDATA}/current and previous' in err and "Traceback" not in err


def test_docs_list_every_difference_and_the_runner() -> None:
    compat = (ROOT / "docs" / "compat.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for case in {*EXCLUDED, *(case for case, _ in DIFFERENCES)}:
        assert f"`{case}`" in compat, case
    for text in (compat, readme):
        assert "python -m tests.buf_testdata" in text and REPO_ENV in text
