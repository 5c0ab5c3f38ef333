"""The lineage (registry/lineage.py) answers the checker's history questions exactly as a walk
over every snapshot does: property-tested over random evolutions, on a real SQLite registry."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protoreg.registry import ir
from protoreg.registry.compat.engine import check_release
from protoreg.registry.compat.gate import check_schema
from protoreg.registry.database import open_registry
from protoreg.registry.lineage import Lineage, lineage_of
from protoreg.registry.numbering import allocate_numbers
from protoreg.registry.registration import register_release
from protoreg.registry.schema import extract_schema
from tests.evolution import Spec, build_model, evolutions

MODEL = "lineage_model"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(sequence=evolutions(max_releases=7), data=st.data())
def test_check_from_the_lineage_equals_the_check_over_every_snapshot(
    tmp_path_factory: object, sequence: list[tuple[str, Spec]], data: st.DataObject
) -> None:
    tmp = tmp_path_factory.mktemp("lineage")  # type: ignore[attr-defined]
    url = f"sqlite:///{Path(tmp) / 'registry.db'}"
    *registered, (version, spec) = sequence
    with open_registry(url) as registry:
        for v, s in registered:
            assert register_release(registry, extract_schema(build_model(MODEL, v, s))).status == "created"
        # Check the last release, and also one of the registered ones (the re-check path).
        candidates = [(version, spec), *registered]
        checked_version, checked_spec = data.draw(st.sampled_from(candidates[:2]))
        schema = extract_schema(build_model(MODEL, checked_version, checked_spec))
        fast = check_schema(registry, schema)
        releases = registry.releases(MODEL)
        package = allocate_numbers(registry.history(MODEL), schema).package
        slow = check_release(MODEL, releases, package, schema.version, schema.fingerprint)
        assert fast == slow
        stored = registry.release_line(MODEL)
        assert stored is not None
        rebuilt = lineage_of((r.version, r.package) for r in releases)
        assert stored.lineage.to_dict() == rebuilt.to_dict()
        assert Lineage.from_dict(rebuilt.to_dict()).to_dict() == rebuilt.to_dict()


def test_a_missing_lineage_is_rebuilt_from_the_snapshots(sqlite_url: str) -> None:
    first = Spec({"PredictRequest": {}, "PredictResponse": {}, "Inner": {}})
    from tests.evolution import FieldDecl

    first.messages["PredictRequest"]["f0"] = FieldDecl("float")
    first.messages["PredictResponse"]["f0"] = FieldDecl("str")
    second = first.copy()
    del second.messages["PredictRequest"]["f0"]
    third = first.copy()
    third.messages["PredictRequest"]["f0"] = FieldDecl("str")  # the old name back with another type
    with open_registry(sqlite_url) as registry:
        register_release(registry, extract_schema(build_model(MODEL, "1.0.0", first)))
        register_release(registry, extract_schema(build_model(MODEL, "1.1.0", second)))
        with registry.engine.begin() as conn:  # as after the migration that added the table
            conn.exec_driver_sql("DELETE FROM lineages")
        schema = extract_schema(build_model(MODEL, "1.2.0", third))
        report = check_schema(registry, schema)
        assert "FIELD_NAME_REUSED" in {f.rule for f in report.findings} or "RESERVED_NAME_REUSED" in {
            f.rule for f in report.findings
        }
        assert not report.passed
        # Registering writes a lineage again, covering every release.
        register_release(registry, extract_schema(build_model(MODEL, "2.0.0", third)))
        line = registry.release_line(MODEL)
        assert line is not None and line.versions == ("1.0.0", "1.1.0", "2.0.0")
        assert line.lineage.labels == ["1.0.0", "1.1.0", "2.0.0"]


def test_reserved_ranges_are_painted_newest_last_without_expanding_them() -> None:
    lineage = Lineage()
    big = ir.ReservedRange(100, ir.FIELD_NUMBER_MAX)
    lineage.fold("old", {"M": ir.Message("M", reserved_numbers=(big,), reserved_names=("a",))}, {})
    lineage.fold("new", {"M": ir.Message("M", reserved_numbers=(ir.ReservedRange(150, 160),))}, {})
    assert lineage.reserved("M", 99, None) is None
    assert lineage.reserved("M", 100, None) == "old"
    assert lineage.reserved("M", 155, None) == "new"
    assert lineage.reserved("M", 161, None) == "old"
    assert lineage.reserved("M", ir.FIELD_NUMBER_MAX, None) == "old"
    assert lineage.reserved("M", None, "a") == "old"
    assert lineage.reserved("N", 100, None) is None
    again = Lineage.from_dict(lineage.to_dict())
    assert again.reserved("M", 155, None) == "new" and again.reserved("M", 170, None) == "old"


def test_verify_finds_a_lineage_that_disagrees_with_the_snapshots(sqlite_url: str) -> None:
    from protoreg.registry.verify import verify_registry
    from tests.evolution import FieldDecl

    spec = Spec({"PredictRequest": {"f0": FieldDecl("float")}, "PredictResponse": {"f0": FieldDecl("str")},
                 "Inner": {}})
    with open_registry(sqlite_url) as registry:
        register_release(registry, extract_schema(build_model(MODEL, "1.0.0", spec)))
        assert verify_registry(registry).ok
        with registry.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE lineages SET lineage_json = replace(lineage_json, '\"1.0.0\"', '\"0.9.0\"')")
        problems = verify_registry(registry).problems
        assert [p.check for p in problems] == ["LINEAGE_MISMATCH"]
        with registry.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM lineages")
        assert verify_registry(registry).ok
