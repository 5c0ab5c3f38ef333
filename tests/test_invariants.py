"""The promise of DESIGN.md, as hypothesis properties over random release sequences.

Each example registers a random evolution (adds, removals, renames, type changes, enum values,
nested messages, new major lines) in a real SQLite registry, then checks invariants 1-6 on what
the registry recorded, and invariant 8 by encoding random messages with every release's
descriptors (compiled by protoc) and decoding them with the newest release of the same major.
"""

from __future__ import annotations

import random
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pool, message_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protoreg.registry import ir
from protoreg.registry.database import open_registry
from protoreg.registry.protoc import compile_descriptor_set
from protoreg.registry.registration import register_release
from protoreg.registry.render import render_package
from protoreg.registry.schema import extract_schema
from protoreg.registry.store import ReleaseInfo
from protoreg.registry.typemap import type_key_compatible
from tests.evolution import Spec, assert_shared_equal, build_model, evolutions, fill

MODEL = "evolving_model"
PROPERTY_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def register_all(
    url: str, sequence: list[tuple[str, Spec]], model: str = MODEL
) -> tuple[list[ReleaseInfo], dict[str, Any]]:
    """Register every release; return the stored releases and the schemas used."""
    schemas = {}
    with open_registry(url) as registry:
        for version, spec in sequence:
            schema = extract_schema(build_model(model, version, spec))
            schemas[version] = schema
            result = register_release(registry, schema)
            assert result.status == "created"
        releases = registry.releases(model)
        # invariant 6: the same version and schema again is a no-op
        for version, _spec in sequence:
            assert register_release(registry, schemas[version]).status == "unchanged"
    return releases, schemas


def renames_of(schema: Any, message: str) -> dict[str, set[str]]:
    spec = schema.message(message)
    return {f.name: set(f.renamed_from) for f in spec.fields} if spec else {}


def check_numbering_invariants(releases: list[ReleaseInfo], schemas: dict[str, Any]) -> None:
    # number -> (name, type_key) history per message
    seen: dict[tuple[str, int], tuple[str, str]] = {}
    ever_numbers: dict[str, set[int]] = {}
    ever_names: dict[str, set[str]] = {}
    previous: dict[tuple[str, str], tuple[int, str]] = {}  # (message, name) -> (number, type_key)
    for release in releases:
        package = release.package
        current: dict[tuple[str, str], tuple[int, str]] = {}
        for message in package.messages:
            if message.name.startswith("PredictStream"):
                continue
            numbers = [f.number for f in message.fields]
            assert len(numbers) == len(set(numbers)), f"duplicate number in {message.name}"
            reserved = set(ir.expand_ranges(message.reserved_numbers))
            for f in message.fields:
                # invariant 5: never in 19000-19999, never past the limit
                assert f.number not in ir.RESERVED_FIELD_NUMBERS and 1 <= f.number <= ir.FIELD_NUMBER_MAX
                assert f.number not in reserved and f.name not in message.reserved_names
                key = (message.name, f.number)
                if key in seen:
                    old_name, old_type = seen[key]
                    # invariant 3: a number only ever carries wire-compatible types
                    assert type_key_compatible(old_type, f.type_key), (key, old_type, f.type_key)
                    # invariant 1/2: a number changes name only through a declared rename
                    if old_name != f.name:
                        assert old_name in renames_of(schemas[release.version], message.name).get(f.name, set())
                seen[key] = (f.name, f.type_key)
                current[(message.name, f.name)] = (f.number, f.type_key)
                # invariant 1: a field that stays, with a compatible type, keeps its number
                before = previous.get((message.name, f.name))
                if before is not None and type_key_compatible(before[1], f.type_key):
                    assert before[0] == f.number, (message.name, f.name, before, f.number)
                if before is not None and not type_key_compatible(before[1], f.type_key):
                    assert before[0] != f.number
            ever_numbers.setdefault(message.name, set()).update(numbers)
            ever_names.setdefault(message.name, set()).update(f.name for f in message.fields)
            # invariant 2: everything ever used and not used now is reserved
            active_numbers = set(numbers)
            active_names = {f.name for f in message.fields}
            assert ever_numbers[message.name] - active_numbers <= reserved
            assert ever_names[message.name] - active_names <= set(message.reserved_names)
        for enum in package.enums:
            values = {v.name: v.number for v in enum.values}
            assert values[f"{ir_upper(enum.name)}_UNSPECIFIED"] == 0  # invariant 4
            assert len(set(values.values())) == len(values)
            for name, number in values.items():
                key = (f"enum:{enum.name}", number)
                if key in seen:
                    assert seen[key][0] == name, "an enum number changed its value name"
                seen[key] = (name, "")
        previous = current


def ir_upper(name: str) -> str:
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).upper()


@PROPERTY_SETTINGS
@given(sequence=evolutions())
def test_numbering_invariants_hold_for_random_evolutions(sequence: list[tuple[str, Spec]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        releases, schemas = register_all(f"sqlite:///{tmp}/registry.db", sequence)
    assert [r.version for r in releases] == [v for v, _ in sequence]
    check_numbering_invariants(releases, schemas)
    for release in releases:
        # invariant 6: a past release renders byte-identically from its snapshot
        assert render_package(release.package) == release.proto_text


def compile_releases(releases: list[ReleaseInfo], root: Path) -> descriptor_pool.DescriptorPool:
    """Compile every release with protoc at once, each under its own package prefix."""
    files = []
    for index, release in enumerate(releases):
        text = release.proto_text.replace(
            f"package {release.package.package};", f"package r{index}.{release.package.package};"
        )
        path = root / f"r{index}" / f"{MODEL}.proto"
        path.parent.mkdir(parents=True)
        path.write_text(text)
        files.append(f"r{index}/{MODEL}.proto")
    pool = descriptor_pool.DescriptorPool()
    for file in compile_descriptor_set(root, files).file:
        pool.Add(file)
    return pool


def message_class(pool: Any, index: int, release: ReleaseInfo, name: str) -> Any:
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"r{index}.{release.package.package}.{name}")
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequence=evolutions(), seed=st.integers(0, 2**32 - 1))
def test_old_release_bytes_decode_under_newest_of_major(sequence: list[tuple[str, Spec]], seed: int) -> None:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        releases, _ = register_all(f"sqlite:///{tmp}/registry.db", sequence)
        pool = compile_releases(releases, Path(tmp) / "protos")
    newest = {r.parsed_version.major: i for i, r in enumerate(releases)}
    compared = 0
    for index, release in enumerate(releases):
        target = newest[release.parsed_version.major]
        for name in ("PredictRequest", "PredictResponse"):
            old_cls = message_class(pool, index, release, name)
            new_cls = message_class(pool, target, releases[target], name)
            for _ in range(3):
                old = old_cls()
                fill(old, rng)
                new = new_cls.FromString(old.SerializeToString())
                compared += assert_shared_equal(old, new)
    assert compared > 0


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequence=evolutions(max_releases=10))
def test_numbering_invariants_hold_for_long_evolutions(sequence: list[tuple[str, Spec]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        releases, schemas = register_all(f"sqlite:///{tmp}/registry.db", sequence)
    check_numbering_invariants(releases, schemas)


@pytest.mark.postgres
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(sequence=evolutions())
def test_numbering_invariants_hold_on_postgres(postgres_url: str, sequence: list[tuple[str, Spec]]) -> None:
    # One schema per test, so each example registers under a model name of its own.
    with open_registry(postgres_url) as registry:
        model = f"evolving{len(registry.model_names())}_model"
    releases, schemas = register_all(postgres_url, sequence, model)
    check_numbering_invariants(releases, schemas)
