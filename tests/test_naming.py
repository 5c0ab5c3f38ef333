"""Naming and layout (``registry/naming.py``): what is written can be read back, and the names
are the ones DESIGN.md promises."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protoreg.registry import ir, naming
from protoreg.registry.render import render_package

MODEL_NAMES = st.from_regex(naming.MODEL_NAME, fullmatch=True).filter(lambda n: len(n) < 40)
VERSIONS = st.builds(
    lambda a, b, c, pre: f"{a}.{b}.{c}{pre}",
    st.integers(0, 999), st.integers(0, 999), st.integers(0, 999), st.sampled_from(["", "-rc.1", "+build.7"]),
)


@given(MODEL_NAMES, VERSIONS)
def test_the_rendered_release_header_reads_back(model: str, version: str) -> None:
    major = int(version.split(".", 1)[0])
    package = ir.Package(package=naming.package_name(model, major), model=model, version=version)
    assert naming.read_release_header(render_package(package)) == (model, version)


@given(MODEL_NAMES, st.integers(0, 10_000))
def test_packages_read_back_and_files_follow_them(model: str, major: int) -> None:
    package = naming.package_name(model, major)
    assert naming.parse_package(package) == (model, major)
    assert naming.proto_path(package, model) == f"{model}/v{major}/{model}.proto"


def test_names_are_the_designs() -> None:
    assert naming.package_name("iris_model", 1) == "iris_model.v1"
    assert naming.service_name("iris_model") == "IrisModelService"
    assert naming.enum_value_name("Species", "setosa") == "SPECIES_SETOSA"
    assert naming.enum_value_name("IrisKind", "Iris-Setosa") == "IRIS_KIND_IRIS_SETOSA"
    assert naming.enum_zero_name("Species") == "SPECIES_UNSPECIFIED"
    assert naming.list_wrapper_name(naming.type_title("scalar", "double")) == "DoubleList"
    assert naming.map_wrapper_name("int64", naming.type_title("scalar", "double")) == "Int64DoubleMap"
    assert naming.map_wrapper_name("string", naming.type_title("message", "a.b.Point")) == "PointMap"
    assert naming.literal_enum_name("PredictRequest", "mood") == "PredictRequestMood"
    assert naming.REGISTRY_PROTO_PATH == "protoreg/registry/v1/registry.proto"
    assert naming.parse_package(naming.REGISTRY_PACKAGE) is None  # not a model's package
    assert naming.read_release_header("// Model: x\nsyntax = \"proto3\";\n") is None
