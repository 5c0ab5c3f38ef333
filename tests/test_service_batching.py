"""Batching: concurrent calls share one ``predict_batch`` call, and every call keeps its own fate.

``batch_model`` (``tests/service_support.py``) records its batches and can be held in the middle
of one, so each test makes the situation it wants on a real server on a loopback port: a batch
running, calls queued behind it, then the batch released. Nothing here depends on timing
except where a deadline is the subject, and then only with wide margins.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protoreg.cli import main
from protoreg.registry.database import open_registry
from protoreg.service.batching import BatchPolicy, ModelLine
from protoreg.service.compile import ProtoTree, load_protos
from protoreg.service.server import ModelServer
from tests.service_support import BatchModel, raw_call, register_models, running, wait_until

SERVICE = "batch_model.v1.BatchModelService"
PREDICT = f"/{SERVICE}/Predict"
STREAM = f"/{SERVICE}/PredictStream"
WAIT = 30.0  # bounds every wait below; none should come near it


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> ProtoTree:
    tmp = tmp_path_factory.mktemp("batching")
    return load_protos(register_models(f"sqlite:///{tmp / 'r.db'}", tmp / "protos", [BatchModel]))


@pytest.fixture(autouse=True)
def fresh_model() -> Iterator[None]:
    BatchModel.reset()
    yield
    BatchModel.hold.set()  # never leave a model thread waiting


def _request(tree: ProtoTree, **fields: Any) -> bytes:
    return tree.message_class("batch_model.v1.PredictRequest")(**fields).SerializeToString()  # type: ignore[no-any-return]


def _value(tree: ProtoTree, data: bytes) -> int:
    return tree.message_class("batch_model.v1.PredictResponse").FromString(data).value  # type: ignore[attr-defined, no-any-return]


def _queued(server: ModelServer, count: int) -> None:
    line = server.lines[SERVICE]
    wait_until(lambda: line.queued == count, f"{count} queued calls (have {line.queued})")


def _hold_first_batch(channel: grpc.Channel, tree: ProtoTree) -> grpc.Future:
    """Start a call whose batch the model holds until ``BatchModel.hold`` is set."""
    BatchModel.hold.clear()
    first = channel.unary_unary(PREDICT).future(_request(tree, value=100), timeout=WAIT)
    assert BatchModel.running.wait(WAIT)
    return first


def test_an_idle_server_answers_one_call_without_waiting_for_a_batch(tree: ProtoTree) -> None:
    # with an hour of batch delay, a lone call still answers: nothing waits for a batch to fill
    with running([BatchModel], tree, batch=BatchPolicy(max_batch_delay=3600)) as (_server, address):
        with grpc.insecure_channel(address) as channel:
            for value in (1, 2, 3):
                assert _value(tree, raw_call(channel, PREDICT, _request(tree, value=value), timeout=WAIT)) == value * 2
    assert BatchModel.batches == [[1], [2], [3]]


def test_calls_that_arrive_while_a_batch_runs_go_together_in_the_next(tree: ProtoTree) -> None:
    with running([BatchModel], tree) as (server, address), grpc.insecure_channel(address) as channel:
        first = _hold_first_batch(channel, tree)
        later = [channel.unary_unary(PREDICT).future(_request(tree, value=v), timeout=WAIT) for v in range(5)]
        _queued(server, 5)
        BatchModel.hold.set()
        assert [_value(tree, f.result()) for f in later] == [0, 2, 4, 6, 8]
        assert _value(tree, first.result()) == 200
    assert BatchModel.batches[0] == [100]
    assert sorted(BatchModel.batches[1]) == [0, 1, 2, 3, 4] and len(BatchModel.batches) == 2


def test_a_bad_input_is_refused_alone_before_it_is_queued(tree: ProtoTree) -> None:
    with running([BatchModel], tree) as (server, address), grpc.insecure_channel(address) as channel:
        first = _hold_first_batch(channel, tree)
        good = [channel.unary_unary(PREDICT).future(_request(tree, value=v), timeout=WAIT) for v in (1, 2)]
        with pytest.raises(grpc.RpcError) as caught:
            raw_call(channel, PREDICT, _request(tree, value=-1), timeout=WAIT)  # pydantic: ge=0
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "value" in (caught.value.details() or "")
        _queued(server, 2)
        BatchModel.hold.set()
        assert [_value(tree, f.result()) for f in good] == [2, 4]
        first.result()
    assert sorted(BatchModel.batches[1]) == [1, 2]


def _internal(future: grpc.Future) -> str:
    """The request id of a call that ended INTERNAL."""
    with pytest.raises(grpc.RpcError) as caught:
        future.result()
    error = caught.value
    assert error.code() == grpc.StatusCode.INTERNAL, error
    (request_id,) = [value for key, value in error.trailing_metadata() or () if key == "request-id"]
    assert request_id in (error.details() or "")
    return str(request_id)


def test_when_predict_batch_raises_only_the_failing_input_fails(tree: ProtoTree,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    with running([BatchModel], tree) as (server, address), grpc.insecure_channel(address) as channel:
        first = _hold_first_batch(channel, tree)
        futures = [
            channel.unary_unary(PREDICT).future(_request(tree, value=v, fail=v == 2), timeout=WAIT) for v in (1, 2, 3)
        ]
        _queued(server, 3)
        BatchModel.hold.set()
        assert _value(tree, futures[0].result()) == 2 and _value(tree, futures[2].result()) == 6
        request_id = _internal(futures[1])
        first.result()
    assert sorted(BatchModel.batches[1]) == [1, 2, 3]
    assert sorted(BatchModel.singles) == [1, 2, 3]  # retried one by one with predict
    assert any(request_id in r.getMessage() and r.exc_info for r in caplog.records)


def test_system_exit_in_the_model_is_internal_and_the_server_keeps_serving(tree: ProtoTree) -> None:
    with running([BatchModel], tree) as (_server, address), grpc.insecure_channel(address) as channel:
        _internal(channel.unary_unary(PREDICT).future(_request(tree, value=7, exit=True), timeout=WAIT))
        assert _value(tree, raw_call(channel, PREDICT, _request(tree, value=8), timeout=WAIT)) == 16


def test_a_wrong_number_of_outputs_fails_its_whole_batch(tree: ProtoTree) -> None:
    with running([BatchModel], tree) as (server, address), grpc.insecure_channel(address) as channel:
        first = _hold_first_batch(channel, tree)
        futures = [channel.unary_unary(PREDICT).future(_request(tree, value=v, short=v == 5), timeout=WAIT)
                   for v in (4, 5)]
        _queued(server, 2)
        BatchModel.hold.set()
        first.result()
        assert len({_internal(f) for f in futures}) == 2  # each call its own request id
        assert _value(tree, raw_call(channel, PREDICT, _request(tree, value=6), timeout=WAIT)) == 12


def test_a_cancelled_call_leaves_the_queue_without_running(tree: ProtoTree) -> None:
    with running([BatchModel], tree) as (server, address), grpc.insecure_channel(address) as channel:
        first = _hold_first_batch(channel, tree)
        gone = channel.unary_unary(PREDICT).future(_request(tree, value=41), timeout=WAIT)
        kept = channel.unary_unary(PREDICT).future(_request(tree, value=42), timeout=WAIT)
        _queued(server, 2)
        gone.cancel()
        _queued(server, 1)  # the server saw the cancellation and took the call out of the queue
        BatchModel.hold.set()
        assert _value(tree, kept.result()) == 84
        first.result()
    assert gone.cancelled()
    assert BatchModel.batches == [[100], [42]]


def test_a_call_whose_deadline_passes_while_queued_never_runs(tree: ProtoTree) -> None:
    with running([BatchModel], tree) as (server, address), grpc.insecure_channel(address) as channel:
        first = _hold_first_batch(channel, tree)
        late = channel.unary_unary(PREDICT).future(_request(tree, value=43), timeout=0.5)
        with pytest.raises(grpc.RpcError) as caught:
            late.result()
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        kept = channel.unary_unary(PREDICT).future(_request(tree, value=44), timeout=WAIT)
        BatchModel.hold.set()
        assert _value(tree, kept.result()) == 88
        first.result()
    assert all(43 not in batch for batch in BatchModel.batches)


def test_stream_answers_stay_in_order_and_its_items_batch_together(tree: ProtoTree) -> None:
    wrap = tree.message_class("batch_model.v1.PredictStreamRequest")
    request = tree.message_class("batch_model.v1.PredictRequest")
    answer = tree.message_class("batch_model.v1.PredictStreamResponse")
    items = [wrap(request=request(value=v)).SerializeToString() for v in range(200)]
    with running([BatchModel], tree) as (_server, address), grpc.insecure_channel(address) as channel:
        BatchModel.hold.clear()
        call = channel.stream_stream(STREAM)(iter(items), timeout=WAIT)
        assert BatchModel.running.wait(WAIT)
        BatchModel.hold.set()
        values = [answer.FromString(data).response.value for data in call]  # type: ignore[attr-defined]
    assert values == [2 * v for v in range(200)]
    assert [v for batch in BatchModel.batches for v in batch] == list(range(200))
    assert max(len(batch) for batch in BatchModel.batches) > 1  # read ahead, so they batched


def test_a_stuck_model_stalls_its_line_and_only_its_line(tree: ProtoTree) -> None:
    policy = BatchPolicy(predict_timeout=0.5)
    with running([BatchModel], tree, batch=policy) as (_server, address), grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)

        def status(service: str) -> int:
            return health.Check(health_pb2.HealthCheckRequest(service=service), timeout=WAIT).status  # type: ignore[no-any-return]

        BatchModel.hold.clear()
        with pytest.raises(grpc.RpcError) as caught:
            raw_call(channel, PREDICT, _request(tree, value=1), timeout=WAIT)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "--predict-timeout" in (caught.value.details() or "")
        with pytest.raises(grpc.RpcError) as refused:
            raw_call(channel, PREDICT, _request(tree, value=2), timeout=WAIT)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert status(SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert status("") == health_pb2.HealthCheckResponse.SERVING  # the rest of the server serves
        raw_call(channel, "/protoreg.registry.v1.RegistryService/ListModels", b"", timeout=WAIT)
        BatchModel.hold.set()  # the model returns: the line serves again
        wait_until(lambda: status(SERVICE) == health_pb2.HealthCheckResponse.SERVING, "SERVING again")
        assert _value(tree, raw_call(channel, PREDICT, _request(tree, value=3), timeout=WAIT)) == 6


def test_a_batch_waits_for_the_calls_recent_traffic_says_are_coming() -> None:
    """After four calls were in flight at once, the next batch waits (here: as long as it takes)
    until four are queued; a fresh line with one caller would not wait at all."""

    class Model:
        def __init__(self) -> None:
            self.batches: list[list[int]] = []

        def predict(self, data: int) -> int:
            return data

        def predict_batch(self, inputs: list[int]) -> list[int]:
            self.batches.append(list(inputs))
            return list(inputs)

    async def scenario() -> list[list[int]]:
        model = Model()
        line = ModelLine("m", model, BatchPolicy(max_batch_delay=3600), asyncio.get_running_loop())
        try:
            assert await line.call(0) == 0  # one caller: no wait at all
            # four in flight at once: the first runs alone (nothing else queued yet), three queue
            burst = [line.submit(v) for v in (1, 2, 3, 4)]
            await asyncio.gather(*burst)
            # the line now expects four; one call waits, with three more it goes as one batch
            waiting = line.submit(5)
            await asyncio.sleep(0.05)
            assert not waiting.done() and line.queued == 1
            rest = [line.submit(v) for v in (6, 7, 8)]
            await asyncio.gather(waiting, *rest)
            return model.batches
        finally:
            line.close()

    batches = asyncio.run(scenario())
    assert batches[0] == [0] and batches[-1] == [5, 6, 7, 8]


def test_iris_predict_batch_agrees_with_its_pipeline() -> None:
    from iris_model.model import IrisInput, IrisModel, Species
    from sklearn import datasets

    model = IrisModel()
    iris = datasets.load_iris()
    rows = iris.data.tolist() + [[0.0, 0.0, 0.0, 0.0], [50.0, 50.0, 50.0, 50.0]]
    inputs = [IrisInput(sepal_length=a, sepal_width=b, petal_length=c, petal_width=d) for a, b, c, d in rows]
    expected = [Species(iris.target_names[label]) for label in model._classifier.predict(rows)]
    assert [output.species for output in model.predict_batch(inputs)] == expected
    assert [model.predict(item).species for item in inputs[:10]] == expected[:10]


# -- predict_batch is checked where the model is loaded -----------------------------------------


BAD_BATCH_MODELS = '''
from pydantic import BaseModel


class In(BaseModel):
    x: float


class Out(BaseModel):
    y: float


class Other(BaseModel):
    z: int


class _Base:
    qualified_name = "batchy_model"
    display_name = "Batchy"
    description = "predict_batch variations"
    version = "1.0.0"
    input_schema = In
    output_schema = Out

    def predict(self, data: In) -> Out:
        return Out(y=data.x)


class WrongInput(_Base):
    def predict_batch(self, inputs: list[Other]) -> list[Out]:
        return []


class WrongOutput(_Base):
    def predict_batch(self, inputs: list[In]) -> list[Other]:
        return []


class NotCallable(_Base):
    predict_batch = 3


class Fine(_Base):
    def predict_batch(self, inputs: list[In]) -> list[Out]:
        return [Out(y=i.x) for i in inputs]
'''


@pytest.mark.parametrize(
    ("cls", "problem"),
    [
        ("WrongInput", "takes list[Other] but the model's input schema is In; annotate it list[In]"),
        ("WrongOutput", "returns list[Other] but the model's output schema is Out; annotate it list[Out]"),
        ("NotCallable", "is not callable (it is int 3)"),
    ],
)
def test_check_refuses_a_predict_batch_that_does_not_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         cls: str, problem: str) -> None:
    (tmp_path / "batchy.py").write_text(BAD_BATCH_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    with open_registry(f"sqlite:///{tmp_path / 'r.db'}"):  # a registry with no release yet
        pass
    result = CliRunner().invoke(main, ["--db", f"sqlite:///{tmp_path / 'r.db'}", "check", f"batchy:{cls}"])
    assert result.exit_code == 1, result.output
    assert f'"batchy:{cls}".predict_batch {problem}' in result.output
    assert "Traceback" not in result.output
    fine = CliRunner().invoke(main, ["--db", f"sqlite:///{tmp_path / 'r.db'}", "check", "batchy:Fine"])
    assert fine.exit_code == 0, fine.output
