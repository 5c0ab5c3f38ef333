"""Models and helpers for the gRPC server tests.

The models live at module level so a ``protoreg serve`` subprocess can load them as
``tests.service_support:Class``. Protos are rendered by the real registry (a SQLite file in a
temporary directory) and compiled by the real ``protoc``; servers listen on free loopback ports.
"""

from __future__ import annotations

import enum
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import grpc
from google.protobuf.message import Message
from pydantic import BaseModel, Field

from protoreg.registry.database import open_registry
from protoreg.registry.registration import register_release
from protoreg.registry.render import render_tree, write_tree
from protoreg.registry.schema import extract_schema
from protoreg.service.compile import ProtoTree, load_protos
from protoreg.service.server import ModelServer, ServeOptions, create_server

REPO = Path(__file__).resolve().parent.parent

# -- echo_model: every supported type, echoed back -------------------------------------------


class Color(enum.StrEnum):
    """A colour (a string enum)."""

    red = "red"
    green = "green"
    dark_blue = "dark-blue"


class Level(enum.Enum):
    """A level (an int enum: values are named by member name)."""

    LOW = 1
    HIGH = 2


class Point(BaseModel):
    """A point in the plane."""

    x: float
    y: float = 0.0
    label: str | None = None


class EchoFields(BaseModel):
    """The fields shared by the echo model's input and output."""

    name: str
    count: int = 7
    ratio: float | None = None
    flag: bool = True
    blob: bytes = b""
    color: Color = Color.red
    level: Level | None = None
    mode: Literal["fast", "slow"] = "fast"
    point: Point | None = None
    points: list[Point] = []
    tags: list[str] = []
    weights: dict[str, float] = {}
    matrix: list[list[float]] = []
    groups: dict[str, list[int]] = {}
    when: datetime | None = None
    wait: timedelta | None = None
    note: str | None  # Optional without a default: absent means None


class EchoInput(EchoFields):
    """What the echo model reads."""

    fail: bool = Field(default=False, description="Raise inside the model.")
    sleep: float = Field(default=0.0, description="Seconds to sleep inside the model.")
    started_marker: str = Field(default="", description="A file to create when predict starts.")


class EchoOutput(EchoFields):
    """The input, echoed, and which input fields were sent."""

    fields_set: list[str] = []


class EchoModel:
    qualified_name = "echo_model"
    display_name = "Echo Model"
    description = "Echoes its input; raises or sleeps on request."
    version = "1.0.0"
    input_schema = EchoInput
    output_schema = EchoOutput

    def predict(self, data: EchoInput) -> EchoOutput:
        if data.started_marker:
            Path(data.started_marker).touch()
        if data.fail:
            raise RuntimeError("the echo model was asked to fail")
        if data.sleep:
            time.sleep(data.sleep)
        values = data.model_dump(exclude={"fail", "sleep", "started_marker"})
        return EchoOutput(**values, fields_set=sorted(data.model_fields_set))


# -- evolve_model: three releases of major 1, one of major 2 ----------------------------------


class KindV1(enum.StrEnum):
    """What kind of thing."""

    alpha = "alpha"
    beta = "beta"


class KindV11(enum.StrEnum):
    """What kind of thing."""

    alpha = "alpha"
    beta = "beta"
    gamma = "gamma"


KindV1.__name__ = KindV11.__name__ = "Kind"  # one enum, at two releases


class EvolveIn100(BaseModel):
    """Input of 1.0.0."""

    a: float
    b: str
    c: int = 0
    kind: KindV1 = KindV1.alpha


class EvolveOut100(BaseModel):
    """Output of 1.0.0."""

    total: float
    label: str
    kind: KindV1


class EvolveIn110(BaseModel):
    """Input of 1.1.0: adds d and the enum value gamma."""

    a: float
    b: str
    c: int = 0
    kind: KindV11 = KindV11.alpha
    d: float | None = None


class EvolveOut110(BaseModel):
    """Output of 1.1.0: adds extra."""

    total: float
    label: str
    kind: KindV11
    extra: str = "new in 1.1"


class EvolveIn120(BaseModel):
    """Input of 1.2.0: c is gone."""

    a: float
    b: str
    kind: KindV11 = KindV11.alpha
    d: float | None = None


class EvolveIn200(BaseModel):
    """Input of 2.0.0: b is an integer now."""

    a: float
    b: int


class EvolveOut200(BaseModel):
    """Output of 2.0.0."""

    total: float


class _Evolve:
    qualified_name = "evolve_model"
    display_name = "Evolve Model"
    description = "A model that changes between releases."


class Evolve100(_Evolve):
    version = "1.0.0"
    input_schema = EvolveIn100
    output_schema = EvolveOut100

    def predict(self, data: EvolveIn100) -> EvolveOut100:
        return EvolveOut100(total=data.a + data.c, label=data.b.upper(), kind=data.kind)


class Evolve110(_Evolve):
    version = "1.1.0"
    input_schema = EvolveIn110
    output_schema = EvolveOut110

    def predict(self, data: EvolveIn110) -> EvolveOut110:
        return EvolveOut110(total=data.a + data.c + (data.d or 0.0), label=data.b.upper(), kind=data.kind)


class Evolve120(_Evolve):
    version = "1.2.0"
    input_schema = EvolveIn120
    output_schema = EvolveOut110

    def predict(self, data: EvolveIn120) -> EvolveOut110:
        return EvolveOut110(total=data.a + (data.d or 0.0), label=data.b.upper(), kind=data.kind)


class Evolve200(_Evolve):
    version = "2.0.0"
    input_schema = EvolveIn200
    output_schema = EvolveOut200

    def predict(self, data: EvolveIn200) -> EvolveOut200:
        return EvolveOut200(total=data.a * data.b)


class EvolveIn100Plus(EvolveIn100):
    """Input of 1.0.0 with one more field."""

    d: float | None = None


class Evolve100Changed(_Evolve):
    """Claims 1.0.0 but adds a field: not the rendered release."""

    version = "1.0.0"
    input_schema = EvolveIn100Plus
    output_schema = EvolveOut100

    def predict(self, data: Any) -> Any:
        raise AssertionError("never served")


# -- tree_model: every echo type plus a recursive message, and no hooks ------------------------


class Node(BaseModel):
    """A node of a tree (a recursive message: requests can nest as deep as a client likes)."""

    value: int = 0
    children: list[Node] = []


class TreeInput(EchoFields):
    """The echo fields and a tree; no field makes the model fail, sleep or touch files."""

    tree: Node | None = None


class TreeOutput(EchoFields):
    """The input, echoed."""

    tree: Node | None = None


class TreeModel:
    """What the fuzz tests serve: every answer it gives comes from protoreg's code, not a hook."""

    qualified_name = "tree_model"
    display_name = "Tree Model"
    description = "Echoes its input, a recursive tree included."
    version = "1.0.0"
    input_schema = TreeInput
    output_schema = TreeOutput

    def predict(self, data: TreeInput) -> TreeOutput:
        return TreeOutput(**data.model_dump())


# -- batch_model: batch-aware, controlled by the test that serves it (in the same process) ------


class BatchInput(BaseModel):
    """One number, and how the model should misbehave on it."""

    value: int = Field(ge=0)
    fail: bool = Field(default=False, description="predict raises for this input (so predict_batch too).")
    exit: bool = Field(default=False, description="predict raises SystemExit for this input.")
    short: bool = Field(default=False, description="predict_batch returns one output too few.")


class BatchOutput(BaseModel):
    """The number, doubled."""

    value: int


class BatchModel:
    """A batch-aware model that records every batch it gets and can be held mid-batch.

    Its state is on the class, so a test serving it in-process can hold the next batch
    (``hold``), see the batches (``batches``) and what ``predict`` got (``singles``).
    """

    qualified_name = "batch_model"
    display_name = "Batch Model"
    description = "Doubles numbers, a batch at a time."
    version = "1.0.0"
    input_schema = BatchInput
    output_schema = BatchOutput

    batches: list[list[int]] = []
    singles: list[int] = []
    hold = threading.Event()  # set: batches run; cleared: the next batch waits for it
    running = threading.Event()  # set when a batch starts

    @classmethod
    def reset(cls) -> None:
        cls.batches = []
        cls.singles = []
        cls.hold = threading.Event()
        cls.hold.set()
        cls.running = threading.Event()

    def predict(self, data: BatchInput) -> BatchOutput:
        type(self).singles.append(data.value)
        if data.exit:
            raise SystemExit(3)
        if data.fail:
            raise ValueError(f"cannot double {data.value}")
        return BatchOutput(value=data.value * 2)

    def predict_batch(self, inputs: list[BatchInput]) -> list[BatchOutput]:
        cls = type(self)
        cls.batches.append([d.value for d in inputs])
        cls.running.set()
        cls.hold.wait()
        if any(d.fail or d.exit for d in inputs):
            raise RuntimeError("a bad input in the batch")
        outputs = [BatchOutput(value=d.value * 2) for d in inputs]
        return outputs[:-1] if any(d.short for d in inputs) else outputs


# -- helpers ----------------------------------------------------------------------------------


def wait_until(condition: Any, what: str, timeout: float = 30.0, poll: float = 0.01) -> None:
    """Return once ``condition()`` holds; fail the test naming ``what`` after ``timeout`` seconds.

    A bound so that a broken server fails a test instead of hanging it, not a timing assertion.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)


def register_models(db_url: str, protos: Path, models: Sequence[Any]) -> Path:
    """Register ``models`` in order with the real registry and render ``protos``."""
    with open_registry(db_url) as registry:
        for model in models:
            register_release(registry, extract_schema(model))
        write_tree(protos, render_tree(registry.served_packages()))
    return protos


def repo_protos() -> ProtoTree:
    """The committed ``proto_versions/`` (iris_model), compiled."""
    return load_protos(REPO / "proto_versions")


@contextmanager
def running(
    models: Sequence[Any], protos: Path | ProtoTree, **options: Any
) -> Iterator[tuple[ModelServer, str]]:
    """A started server on a free loopback port; stopped (no grace) on exit."""
    options.setdefault("address", "127.0.0.1:0")
    server = create_server(models, protos, ServeOptions(**options))
    port = server.start()
    try:
        yield server, f"127.0.0.1:{port}"
    finally:
        server.stop(0)


def raw_call(channel: grpc.Channel, method: str, payload: bytes, timeout: float | None = None) -> bytes:
    """A unary call with raw bytes both ways."""
    result: bytes = channel.unary_unary(method)(payload, timeout=timeout)
    return result


def start_serve(
    protos: Path, refs: Sequence[str], *args: str, address: str = "127.0.0.1:0", startup: float = 120.0,
    env: dict[str, str] | None = None, path: Sequence[Path] = (), printed: list[str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """``protoreg serve`` in a subprocess, once it listens: the process and its ``host:port``.

    Its stderr goes to ``serve.log`` next to ``protos`` (the server logs there, and a pipe nobody
    reads would fill up and block it under load). ``env`` adds variables, ``path`` folders to
    ``PYTHONPATH``; ``printed`` gets the lines it printed up to ``listening on``.
    """
    env = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join([*map(str, path), str(REPO)])}
    log = open(protos.parent / "serve.log", "a", encoding="utf-8")  # noqa: SIM115 (the process owns it)
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "protoreg"),
            "--protos",
            str(protos),
            "serve",
            *refs,
            "--address",
            address,
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        env=env,
        cwd=protos.parent,
    )
    log.close()
    assert process.stdout is not None
    fd = process.stdout.fileno()
    output = b""
    deadline = time.monotonic() + startup
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        chunk = os.read(fd, 4096) if ready else b""
        if not chunk:  # the deadline passed, or the process exited
            break
        output += chunk
        lines = output.decode("utf-8", "replace").splitlines()
        for line in lines:
            if line.startswith("listening on "):
                if printed is not None:
                    printed.extend(lines)
                return process, line.split()[2]
    process.kill()
    process.wait()
    logged = (protos.parent / "serve.log").read_text(encoding="utf-8")
    raise AssertionError(f"serve did not start: {output.decode('utf-8', 'replace')}{logged[-2000:]}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Kill ``process`` (one we started) if it still runs, and reap it."""
    if process.poll() is None:
        process.kill()
    process.wait()
    if process.stdout is not None:
        process.stdout.close()


# -- every method of a server, for the fuzz and access tests -----------------------------------

CALL_TIMEOUT = 60.0  # only so a hung server fails a test instead of hanging it


@dataclass(frozen=True)
class Method:
    """One method of the running server, as the fuzzer sees it."""

    path: str
    request: type[Message]
    request_streaming: bool
    response_streaming: bool
    not_found_ok: bool = False  # the method reports unknown names with NOT_FOUND

    def __repr__(self) -> str:  # what hypothesis prints for a failing example
        return self.path


STANDARD_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)
NOT_FOUND_OK = ("/protoreg.registry.v1.RegistryService/", "/grpc.health.v1.Health/Check")


def server_methods(tree: ProtoTree) -> list[Method]:
    """Every method a server for ``tree`` offers: the models', the registry's, health's, reflection's."""
    found: list[Method] = []
    services = [r.service for r in tree.releases.values()]
    names = ("protoreg.registry.v1.RegistryService", *STANDARD_SERVICES)
    services += [tree.pool.FindServiceByName(name) for name in names]
    for service in services:
        for method in service.methods:
            path = f"/{service.full_name}/{method.name}"
            found.append(
                Method(
                    path,
                    tree.message_class(method.input_type.full_name),
                    method.client_streaming,
                    method.server_streaming,
                    not_found_ok=path.startswith(NOT_FOUND_OK),
                )
            )
    return found


def send(channel: grpc.Channel, method: Method, payloads: list[bytes]) -> tuple[grpc.StatusCode, str]:
    """One call with raw payloads; the status it ended with (a Watch is cancelled after one answer)."""
    try:
        if not method.request_streaming and not method.response_streaming:
            raw_call(channel, method.path, payloads[0], timeout=CALL_TIMEOUT)
        elif not method.request_streaming:
            call = channel.unary_stream(method.path)(payloads[0], timeout=CALL_TIMEOUT)
            next(call, None)  # Watch never ends by itself: one answer (or the error) is enough
            call.cancel()
        else:
            list(channel.stream_stream(method.path)(iter(payloads), timeout=CALL_TIMEOUT))
    except grpc.RpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""
