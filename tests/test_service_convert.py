"""Compiled conversion, property-tested: pydantic -> proto bytes -> pydantic is the identity.

Whatever values a client sends (zeros, empty strings, ``false``, unset optionals, nested lists
and maps, times), the model sees exactly them; and what the model returns reaches the client
unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protoreg.service.binding import ServedModel, bind_model
from protoreg.service.compile import load_protos
from tests.service_support import Color, EchoInput, EchoModel, EchoOutput, Level, Point, register_models

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
FLOATS = st.floats(allow_nan=False)
TEXT = st.text(max_size=8)
TIMES = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59), timezones=st.just(UTC)
)
DURATIONS = st.timedeltas(min_value=timedelta(days=-3_000_000), max_value=timedelta(days=3_000_000))
POINTS = st.builds(Point, x=FLOATS, y=FLOATS, label=st.none() | TEXT)


def _maybe(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.none() | strategy


@st.composite
def echo_inputs(draw: st.DrawFn) -> EchoInput:
    """Inputs with a random subset of fields sent, every type in play."""
    optional = {
        "count": INT64,
        "ratio": _maybe(FLOATS),
        "flag": st.booleans(),
        "blob": st.binary(max_size=8),
        "color": st.sampled_from(Color),
        "level": _maybe(st.sampled_from(Level)),
        "mode": st.sampled_from(["fast", "slow"]),
        "point": _maybe(POINTS),
        "points": st.lists(POINTS, max_size=3),
        "tags": st.lists(TEXT, max_size=3),
        "weights": st.dictionaries(TEXT, FLOATS, max_size=3),
        "matrix": st.lists(st.lists(FLOATS, max_size=3), max_size=3),
        "groups": st.dictionaries(TEXT, st.lists(INT64, max_size=3), max_size=3),
        "when": _maybe(TIMES),
        "wait": _maybe(DURATIONS),
    }
    chosen = draw(st.sets(st.sampled_from(sorted(optional))))
    values = {name: draw(optional[name]) for name in sorted(chosen)}
    return EchoInput(name=draw(TEXT), note=draw(_maybe(TEXT)), **values)


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> ServedModel:
    tmp: Path = tmp_path_factory.mktemp("convert")
    protos = register_models(f"sqlite:///{tmp / 'registry.db'}", tmp / "protos", [EchoModel])
    return bind_model(EchoModel, load_protos(protos))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=echo_inputs())
def test_request_round_trip_is_the_identity(echo: ServedModel, value: EchoInput) -> None:
    codec = echo.codec
    message = codec.request_class()
    codec.request.fill(message, value)
    decoded = codec.to_input(codec.parse(message.SerializeToString()))
    assert decoded == value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=echo_inputs())
def test_response_round_trip_is_the_identity(echo: ServedModel, value: EchoInput) -> None:
    codec = echo.codec
    output = EchoOutput(**value.model_dump(exclude={"fail", "sleep", "started_marker"}), fields_set=["x"])
    response = codec.response_class.FromString(codec.to_response(output).SerializeToString())
    back = codec.response.decode(response)
    assert EchoOutput.model_validate(back) == output
