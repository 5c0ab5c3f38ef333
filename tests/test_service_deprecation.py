"""Deprecated request fields: rendered ``[deprecated = true]``, and logged once per client peer
when sent, on the gRPC side and on the JSON-over-HTTP side, through a real server."""

from __future__ import annotations

import json
import logging
import urllib.request
from pathlib import Path

import grpc
import pytest
from pydantic import BaseModel, Field

from protoreg.service.compile import load_protos
from protoreg.service.deprecation import DeprecatedFields, peer_host
from tests.service_support import register_models, running

WAIT = 30.0
PATH = "/legacy_model.v1.LegacyModelService/Predict"


class Address(BaseModel):
    """Where a customer lives."""

    city: str = ""
    zip_code: str | None = Field(None, deprecated="use city")


class LegacyInput(BaseModel):
    """An input with deprecated fields, one of them nested."""

    age: int = Field(ge=0)
    nickname: str | None = Field(None, deprecated="no model reads it")
    address: Address | None = None


class LegacyOutput(BaseModel):
    score: float


class LegacyModel:
    qualified_name = "legacy_model"
    display_name = "Legacy"
    description = "Scores a customer."
    version = "1.0.0"
    input_schema = LegacyInput
    output_schema = LegacyOutput

    def predict(self, data: LegacyInput) -> LegacyOutput:
        return LegacyOutput(score=float(data.age))


@pytest.fixture(scope="module")
def protos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("deprecation")
    return register_models(f"sqlite:///{tmp / 'r.db'}", tmp / "protos", [LegacyModel])


def test_deprecated_fields_are_rendered_with_their_reason(protos: Path) -> None:
    text = (protos / "legacy_model" / "v1" / "legacy_model.proto").read_text(encoding="utf-8")
    assert "  // Deprecated: no model reads it.\n  optional string nickname = 2 [deprecated = true];\n" in text
    assert "  // Deprecated: use city.\n  optional string zip_code = 2 [deprecated = true];\n" in text
    assert "  // Required.\n  // Must be at least 0.\n  optional int64 age = 1;\n" in text


def test_used_finds_nested_deprecated_fields(protos: Path) -> None:
    tree = load_protos(protos)
    request = tree.message_class("legacy_model.v1.PredictRequest")
    fields = DeprecatedFields(request.DESCRIPTOR, "model legacy_model 1.0.0")
    message = request(age=3, nickname="x")
    message.address.zip_code = "12345"
    assert fields.used(message) == ["nickname", "address.zip_code"]
    assert fields.used(request(age=3)) == []
    assert peer_host("ipv4:127.0.0.1:5001") == "ipv4:127.0.0.1"
    assert peer_host("ipv6:[::1]:5001") == "ipv6:[::1]"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "protoreg.service.deprecation"]


def test_the_server_logs_a_deprecated_field_once_per_peer_on_both_transports(
    protos: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="protoreg.service.deprecation")
    tree = load_protos(protos)
    request = tree.message_class("legacy_model.v1.PredictRequest")
    with running([LegacyModel], tree, http_address="127.0.0.1:0") as (server, address):
        with grpc.insecure_channel(address) as channel:
            call = channel.unary_unary(PATH)
            call(request(age=1).SerializeToString(), timeout=WAIT)
            assert _warnings(caplog) == []
            for _ in range(3):  # the same client, new connections or not: one line
                call(request(age=1, nickname="n").SerializeToString(), timeout=WAIT)
        with grpc.insecure_channel(address) as other:
            other.unary_unary(PATH)(request(age=1, nickname="n").SerializeToString(), timeout=WAIT)
        lines = _warnings(caplog)
        assert len(lines) == 1, lines
        assert lines[0].startswith('client ipv4:127.0.0.1 sent the deprecated field "nickname" of model '
                                   "legacy_model 1.0.0")
        body = json.dumps({"age": 2, "address": {"zipCode": "123"}}).encode()
        for _ in range(2):
            post = urllib.request.Request(f"http://127.0.0.1:{server.http.port}{PATH}", data=body, headers={
                "Content-Type": "application/json", "Connect-Protocol-Version": "1"})
            with urllib.request.urlopen(post, timeout=WAIT) as answer:
                assert json.loads(answer.read()) == {"score": 2.0}
    lines = _warnings(caplog)
    assert len(lines) == 2, lines
    assert '"address.zip_code"' in lines[1]
