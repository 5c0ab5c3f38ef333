"""The registry store on a real SQLite file and on the machine's PostgreSQL."""

from __future__ import annotations

import enum
import multiprocessing
from typing import Optional

import pytest
from pydantic import BaseModel, Field
from sqlalchemy import create_engine, text

from protoreg.registry import ir
from protoreg.registry.database import open_registry
from protoreg.registry.errors import DatabaseError, ReleaseConflictError, VersionError
from protoreg.registry.registration import register_release
from protoreg.registry.render import render_package
from protoreg.registry.schema import extract_schema
from protoreg.registry.upgrade import schema_head
from tests.conftest import make_model


class Out(BaseModel):
    score: float


class V1(BaseModel):
    age: int
    name: str


class V2(BaseModel):
    """Adds a field, removes one."""

    age: int
    height: float


def schema(version: str, inp: type[BaseModel] = V1, out: type[BaseModel] = Out):  # type: ignore[no-untyped-def]
    return extract_schema(make_model("people_model", version, inp, out))


def test_register_allocates_and_reserves(registry_url: str) -> None:
    with open_registry(registry_url) as registry:
        first = register_release(registry, schema("1.0.0"))
        assert first.status == "created"
        second = register_release(registry, schema("1.1.0", V2))
        request = second.package.message("PredictRequest")
        assert request is not None
        assert {f.name: f.number for f in request.fields} == {"age": 1, "height": 3}
        assert list(ir.expand_ranges(request.reserved_numbers)) == [2]
        assert request.reserved_names == ("name",)
        assert [c.describe() for c in second.changes] == [
            "added PredictRequest.height = 3",
            "removed PredictRequest.name (number 2 reserved)",
        ]
        assert [r.version for r in registry.releases("people_model")] == ["1.0.0", "1.1.0"]


def test_same_version_same_schema_is_a_no_op(registry_url: str) -> None:
    with open_registry(registry_url) as registry:
        register_release(registry, schema("1.0.0"))
        again = register_release(registry, schema("1.0.0"))
        assert again.status == "unchanged"
        assert len(registry.releases("people_model")) == 1


def test_same_version_other_schema_is_refused(registry_url: str) -> None:
    with open_registry(registry_url) as registry:
        register_release(registry, schema("1.0.0"))
        with pytest.raises(ReleaseConflictError, match="already registered with a different schema"):
            register_release(registry, schema("1.0.0", V2))


def test_lower_version_is_refused(registry_url: str) -> None:
    with open_registry(registry_url) as registry:
        register_release(registry, schema("1.2.0"))
        with pytest.raises(VersionError, match="lower than the newest release 1.2.0"):
            register_release(registry, schema("1.1.9", V2))


def test_non_semver_is_refused(sqlite_url: str) -> None:
    with open_registry(sqlite_url) as registry, pytest.raises(VersionError, match="not a semantic version"):
        register_release(registry, schema("1.0"))


def test_dry_run_writes_nothing(registry_url: str) -> None:
    with open_registry(registry_url) as registry:
        planned = register_release(registry, schema("1.0.0"), dry_run=True)
        assert planned.status == "planned"
        assert planned.package.message("PredictRequest") is not None
        assert registry.model_names() == []
        register_release(registry, schema("1.0.0"))
        register_release(registry, schema("1.1.0", V2), dry_run=True)
        assert [r.version for r in registry.releases("people_model")] == ["1.0.0"]


def test_wire_compatible_type_change_keeps_number_incompatible_gets_new(sqlite_url: str) -> None:
    class A(BaseModel):
        count: int = Field(json_schema_extra={"protoreg": {"type": "int32"}})
        label: str

    class B(BaseModel):
        count: int  # int32 -> int64: same group, keeps 1
        label: bytes  # string -> bytes: allowed one way, keeps 2

    class C(BaseModel):
        count: float  # int64 -> double: incompatible, new number
        label: str  # bytes -> string: not allowed that way, new number

    with open_registry(sqlite_url) as registry:
        register_release(registry, schema("1.0.0", A))
        b = register_release(registry, schema("1.1.0", B)).package.message("PredictRequest")
        c = register_release(registry, schema("2.0.0", C)).package.message("PredictRequest")
    assert b is not None and c is not None
    assert {f.name: f.number for f in b.fields} == {"count": 1, "label": 2}
    assert {f.name: f.number for f in c.fields} == {"count": 3, "label": 4}
    assert list(ir.expand_ranges(c.reserved_numbers)) == [1, 2]
    assert c.reserved_names == ()  # the names are still in use, with new numbers


def test_rename_keeps_number_and_reserves_old_name(sqlite_url: str) -> None:
    class Renamed(BaseModel):
        age: int
        full_name: str = Field(json_schema_extra={"protoreg": {"renamed_from": "name"}})

    with open_registry(sqlite_url) as registry:
        register_release(registry, schema("1.0.0"))
        message = register_release(registry, schema("1.1.0", Renamed)).package.message("PredictRequest")
    assert message is not None
    assert {f.name: f.number for f in message.fields} == {"age": 1, "full_name": 2}
    assert message.reserved_names == ("name",)
    assert message.reserved_numbers == ()


def test_removed_field_comes_back_with_its_number(sqlite_url: str) -> None:
    with open_registry(sqlite_url) as registry:
        register_release(registry, schema("1.0.0"))
        register_release(registry, schema("1.1.0", V2))
        back = register_release(registry, schema("1.2.0", V1)).package.message("PredictRequest")
    assert back is not None
    assert {f.name: f.number for f in back.fields} == {"age": 1, "name": 2}
    assert list(ir.expand_ranges(back.reserved_numbers)) == [3]
    assert back.reserved_names == ("height",)


def test_enum_values_are_numbered_for_life(sqlite_url: str) -> None:
    first = enum.Enum("Kind", {"a": "a", "b": "b"}, type=str)
    second = enum.Enum("Kind", {"b": "b", "c": "c"}, type=str)
    third = enum.Enum("Kind", {"a": "a", "c": "c"}, type=str)
    outs = [type("Out", (BaseModel,), {"__annotations__": {"kind": e}}) for e in (first, second, third)]
    with open_registry(sqlite_url) as registry:
        versions = ("1.0.0", "1.1.0", "1.2.0")
        packages = [register_release(registry, schema(v, V1, o)).package for v, o in zip(versions, outs, strict=True)]
    numbers = [{v.name: v.number for v in p.enums[0].values} for p in packages]
    assert numbers[0] == {"KIND_UNSPECIFIED": 0, "KIND_A": 1, "KIND_B": 2}
    assert numbers[1] == {"KIND_UNSPECIFIED": 0, "KIND_B": 2, "KIND_C": 3}
    assert numbers[2] == {"KIND_UNSPECIFIED": 0, "KIND_A": 1, "KIND_C": 3}
    assert list(ir.expand_ranges(packages[1].enums[0].reserved_numbers)) == [1]
    assert packages[1].enums[0].reserved_names == ("KIND_A",)


def test_numbers_skip_the_protobuf_reserved_range() -> None:
    from protoreg.registry.numbering import History, Slot, allocate_numbers

    history = History()
    scope = history.scope("message", "PredictRequest")
    scope.slots[18999] = Slot(18999, "old", "single:scalar:int64", active=False)
    numbered = allocate_numbers(history, schema("1.0.0"))
    request = numbered.package.message("PredictRequest")
    assert request is not None and [f.number for f in request.fields] == [20000, 20001]


def test_number_limit_is_enforced_with_a_clear_error() -> None:
    from protoreg.registry.errors import NumberingError
    from protoreg.registry.numbering import History, Slot, allocate_numbers

    history = History()
    scope = history.scope("message", "PredictRequest")
    scope.slots[ir.FIELD_NUMBER_MAX] = Slot(ir.FIELD_NUMBER_MAX, "last", "single:scalar:int64", active=False)
    with pytest.raises(NumberingError, match="536870911"):
        allocate_numbers(history, schema("1.0.0"))


def test_past_release_renders_byte_identically(sqlite_url: str) -> None:
    with open_registry(sqlite_url) as registry:
        releases = (("1.0.0", V1), ("1.1.0", V2))
        texts = [render_package(register_release(registry, schema(v, i)).package) for v, i in releases]
        stored = [r.proto_text for r in registry.releases("people_model")]
        again = [render_package(r.package) for r in registry.releases("people_model")]
    assert texts == stored == again
    assert "// Release: people_model==1.0.0" in stored[0]


def test_served_packages_are_newest_of_each_major(sqlite_url: str) -> None:
    class V3(BaseModel):
        age: Optional[int] = None

    with open_registry(sqlite_url) as registry:
        for version, inp in (("1.0.0", V1), ("1.1.0", V2), ("2.0.0", V3)):
            register_release(registry, schema(version, inp))
        served = registry.served_packages()
    assert [(p.package, p.version) for p in served] == [
        ("people_model.v1", "1.1.0"),
        ("people_model.v2", "2.0.0"),
    ]


def test_database_is_upgraded_on_open(sqlite_url: str) -> None:
    open_registry(sqlite_url).close()
    engine = create_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == schema_head()
    engine.dispose()


def test_unreachable_database_is_one_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DatabaseError, match="does not exist"):
        open_registry(f"sqlite:///{tmp_path}/missing/dir/registry.db")
    with pytest.raises(DatabaseError, match="not a database URL"):
        open_registry("not a url")


def _register_in_process(url: str, version: str) -> str:
    from protoreg.registry.schema import extract_schema as extract

    inputs = {"1": V1, "2": V2}
    with open_registry(url) as registry:
        return register_release(registry, extract(make_model("people_model", version, inputs[version[0]], Out))).status


def test_concurrent_registrations_of_one_release_record_it_once(registry_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Pool(6) as pool:
        statuses = pool.starmap(_register_in_process, [(registry_url, "1.0.0")] * 6)
    assert sorted(statuses) == ["created"] + ["unchanged"] * 5
    with open_registry(registry_url) as registry:
        assert [r.version for r in registry.releases("people_model")] == ["1.0.0"]


def test_missing_database_driver_is_one_clear_error() -> None:
    with pytest.raises(DatabaseError, match='driver for mysql://u@localhost/db is not installed'):
        open_registry("mysql://u@localhost/db")
