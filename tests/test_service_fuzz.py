"""Bad input to a running server: random and partly valid bytes sent to every method.

Every method the server offers (each model's ``Predict`` and ``PredictStream``, the registry
service, health and both reflection services) gets random bytes, random protobuf encodings
(real and made-up field numbers, every wire type, lengths that lie), truncated valid messages,
valid messages with values anywhere in their type's range (unknown enum numbers, timestamps
and durations outside what protobuf allows, NaN), huge repeated fields, deeply nested messages,
and valid messages of the wrong type. Every answer must be ``OK`` or ``INVALID_ARGUMENT``,
``RESOURCE_EXHAUSTED`` for size, and ``NOT_FOUND`` only where the registry or health service
reports an unknown model, major line or service: never ``INTERNAL`` or ``UNKNOWN`` (the models
served here never raise, so any ``INTERNAL`` is protoreg's). After every example the server
still answers a valid call.

The default run keeps the example counts small; the ``slow`` variant runs many more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor, message_factory
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from iris_model import IrisModel

from protoreg.service.compile import ProtoTree, load_protos
from tests.service_support import (
    CALL_TIMEOUT,
    Evolve100,
    Evolve110,
    Evolve120,
    Evolve200,
    Method,
    TreeModel,
    raw_call,
    register_models,
    running,
    send,
    server_methods,
)

FD = descriptor.FieldDescriptor
MAX_MESSAGE_BYTES = 64 * 1024
ALWAYS_ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
SERVED = [TreeModel, IrisModel, Evolve120, Evolve200]
TREE = "/tree_model.v1.TreeModelService"


@dataclass
class Fuzzed:
    tree: ProtoTree
    channel: grpc.Channel
    methods: list[Method]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    tmp = tmp_path_factory.mktemp("fuzz")
    models = [TreeModel, IrisModel, Evolve100, Evolve110, Evolve120, Evolve200]
    tree = load_protos(register_models(f"sqlite:///{tmp / 'r.db'}", tmp / "protos", models))
    with running(SERVED, tree, max_message_bytes=MAX_MESSAGE_BYTES) as (_server, address):
        with grpc.insecure_channel(address) as channel:
            yield Fuzzed(tree, channel, server_methods(tree))


# -- sending and judging ------------------------------------------------------------------------


def assert_acceptable(fuzzed: Fuzzed, method: Method, payloads: list[bytes]) -> None:
    code, details = send(fuzzed.channel, method, payloads)
    allowed = ALWAYS_ALLOWED | ({grpc.StatusCode.NOT_FOUND} if method.not_found_ok else set())
    shown = [p[:64].hex() + ("..." if len(p) > 64 else "") for p in payloads]
    assert code in allowed, f"{method.path} answered {code.name}: {details!r} to {shown}"
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:  # for the size of a message, not of a status
        assert "message larger than max" in details, f"{method.path} answered {details!r} to {shown}"
    assert_still_serving(fuzzed)


def assert_still_serving(fuzzed: Fuzzed) -> None:
    request = fuzzed.tree.message_class("tree_model.v1.PredictRequest")(name="still here")
    data = raw_call(fuzzed.channel, f"{TREE}/Predict", request.SerializeToString(), timeout=CALL_TIMEOUT)
    assert fuzzed.tree.message_class("tree_model.v1.PredictResponse").FromString(data).name == "still here"
    health = raw_call(fuzzed.channel, "/grpc.health.v1.Health/Check", b"", timeout=CALL_TIMEOUT)
    assert health_pb2.HealthCheckResponse.FromString(health).status == health_pb2.HealthCheckResponse.SERVING


# -- wire-level building blocks -----------------------------------------------------------------


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative numbers as protobuf sends them: ten bytes
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


def length_delimited(number: int, body: bytes) -> bytes:
    return tag(number, 2) + varint(len(body)) + body


INT_RANGES = {
    **dict.fromkeys((FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32), (-(2**31), 2**31 - 1)),
    **dict.fromkeys((FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64), (-(2**63), 2**63 - 1)),
    **dict.fromkeys((FD.TYPE_UINT32, FD.TYPE_FIXED32), (0, 2**32 - 1)),
    **dict.fromkeys((FD.TYPE_UINT64, FD.TYPE_FIXED64), (0, 2**64 - 1)),
}


def scalar(fd: descriptor.FieldDescriptor) -> st.SearchStrategy[Any]:
    """Any value of the field's type, edges and nonsense within the type included."""
    if fd.type in INT_RANGES:
        low, high = INT_RANGES[fd.type]
        return st.one_of(st.integers(low, high), st.sampled_from([low, high, 0, 1]))
    if fd.type == FD.TYPE_DOUBLE:
        return st.floats()
    if fd.type == FD.TYPE_FLOAT:
        return st.floats(width=32)
    if fd.type == FD.TYPE_BOOL:
        return st.booleans()
    if fd.type == FD.TYPE_STRING:  # now and then long: servers like to quote what they refuse
        return st.one_of(st.text(max_size=12), st.text(min_size=1, max_size=4).map(lambda t: t * 5000))
    if fd.type == FD.TYPE_BYTES:
        return st.binary(max_size=12)
    if fd.type == FD.TYPE_ENUM:  # mostly known numbers (so later fields get decoded), some no release had
        known = st.sampled_from([v.number for v in fd.enum_type.values])
        return st.one_of(known, known, st.integers(-(2**31), 2**31 - 1))
    raise AssertionError(f"no strategy for {fd.full_name}")


def _is_map(fd: descriptor.FieldDescriptor) -> bool:
    return fd.message_type is not None and fd.message_type.GetOptions().map_entry


@st.composite
def message(draw: Callable[..., Any], cls: type[Message], depth: int = 0) -> Message:
    """A valid message of ``cls`` whose fields take any value of their type (deep enough to matter)."""
    msg = cls()
    for fd in cls.DESCRIPTOR.fields:
        if not draw(st.booleans()):
            continue
        sub = fd.message_type
        if _is_map(fd):
            key_fd, value_fd = sub.fields_by_name["key"], sub.fields_by_name["value"]
            entries = getattr(msg, fd.name)
            for _ in range(draw(st.integers(0, 2))):
                key = draw(scalar(key_fd))
                if value_fd.message_type is None:
                    entries[key] = draw(scalar(value_fd))
                elif depth < 3:
                    entries[key].CopyFrom(draw(message(message_factory.GetMessageClass(value_fd.message_type),
                                                       depth + 1)))
        elif sub is not None:
            if depth >= 3:
                continue
            sub_cls = message_factory.GetMessageClass(sub)
            if fd.is_repeated:
                for _ in range(draw(st.integers(0, 2))):
                    getattr(msg, fd.name).add().CopyFrom(draw(message(sub_cls, depth + 1)))
            else:
                getattr(msg, fd.name).CopyFrom(draw(message(sub_cls, depth + 1)))
        elif fd.is_repeated:
            getattr(msg, fd.name).extend(draw(st.lists(scalar(fd), max_size=3)))
        else:
            setattr(msg, fd.name, draw(scalar(fd)))
    return msg


# -- the families of bad input ------------------------------------------------------------------


def random_bytes(cls: type[Message]) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=256)


@st.composite
def _wire_fields(draw: Callable[..., Any], numbers: list[int], depth: int) -> bytes:
    out = b""
    for _ in range(draw(st.integers(0, 5))):
        number = draw(st.one_of(
            st.sampled_from(numbers),
            st.integers(0, 2**29 + 8),
            st.sampled_from([0, 19000, 19999, 2**29 - 1, 2**29]),
        ))
        wire_type = draw(st.integers(0, 7))  # 3 and 4 are groups, 6 and 7 do not exist
        out += tag(number, wire_type)
        if wire_type == 0:
            out += varint(draw(st.integers(-(2**63), 2**64 - 1)))
        elif wire_type == 1:
            out += draw(st.binary(min_size=8, max_size=8))
        elif wire_type == 5:
            out += draw(st.binary(min_size=4, max_size=4))
        elif wire_type == 2:
            if depth < 3 and draw(st.booleans()):
                body = draw(_wire_fields(numbers, depth + 1))
            else:
                body = draw(st.binary(max_size=24))
            honest = draw(st.integers(0, 7)) > 0
            out += varint(len(body) if honest else draw(st.integers(0, 2**32))) + body
    return out


def wire(cls: type[Message]) -> st.SearchStrategy[bytes]:
    """Protobuf-shaped bytes: the message's own field numbers and made-up ones, any wire type."""
    numbers = sorted({fd.number for fd in cls.DESCRIPTOR.fields} | set(range(1, 8)))
    return _wire_fields(numbers, 0)


def valid(cls: type[Message]) -> st.SearchStrategy[bytes]:
    return message(cls).map(lambda m: m.SerializeToString())


@st.composite
def _truncated(draw: Callable[..., Any], cls: type[Message]) -> bytes:
    data = draw(message(cls)).SerializeToString()
    return data[: draw(st.integers(0, max(len(data) - 1, 0)))]


def truncated(cls: type[Message]) -> st.SearchStrategy[bytes]:
    return _truncated(cls)


@st.composite
def _huge(draw: Callable[..., Any], cls: type[Message]) -> bytes:
    repeated = [fd for fd in cls.DESCRIPTOR.fields if fd.is_repeated and not _is_map(fd)]
    msg = draw(message(cls, 2))
    if not repeated:  # nothing repeated: one huge unknown field instead
        return msg.SerializeToString() + length_delimited(99, b"\x00" * draw(st.sampled_from([1000, 70000])))
    fd = draw(st.sampled_from(repeated))
    count = draw(st.sampled_from([300, 3000, 9000, 40000]))  # under and over the 64 KiB limit
    one = cls()
    if fd.message_type is not None:
        getattr(one, fd.name).add()
    else:
        getattr(one, fd.name).append(draw(scalar(fd)))
    item = one.SerializeToString()
    count = min(count, 4 * MAX_MESSAGE_BYTES // len(item))  # a long string item needs fewer
    # serialized messages concatenate as a merge, so this is ``msg`` with ``count`` more items
    return msg.SerializeToString() + item * count


def huge(cls: type[Message]) -> st.SearchStrategy[bytes]:
    return _huge(cls)


@st.composite
def _deep(draw: Callable[..., Any], cls: type[Message]) -> bytes:
    """A length-delimited field nested ``depth`` times: a real recursive path, or any number."""
    depth = draw(st.integers(1, 160))  # protobuf refuses more than 100 levels
    tree_request = cls.DESCRIPTOR.fields_by_name.get("tree")
    if tree_request is not None and draw(st.booleans()):
        children = tree_request.message_type.fields_by_name["children"].number
        body = b""
        for _ in range(depth):
            body = length_delimited(children, body)
        return length_delimited(tree_request.number, body)
    number = draw(st.sampled_from(sorted({fd.number for fd in cls.DESCRIPTOR.fields} | {1, 2})))
    body = b""
    for _ in range(depth):
        body = length_delimited(number, body)
    return body


def deep(cls: type[Message]) -> st.SearchStrategy[bytes]:
    return _deep(cls)


FAMILIES: dict[str, Callable[[type[Message]], st.SearchStrategy[bytes]]] = {
    "random_bytes": random_bytes,
    "wire": wire,
    "valid": valid,
    "truncated": truncated,
    "huge": huge,
    "deep": deep,
}


def _other_type(fuzzed: Fuzzed) -> Callable[[type[Message]], st.SearchStrategy[bytes]]:
    """A valid message of some other request type of the server (a client that mixed them up)."""
    types = sorted({m.request for m in fuzzed.methods}, key=lambda c: c.DESCRIPTOR.full_name)
    return lambda _cls: st.sampled_from(types).flatmap(valid)


def _fuzz(fuzzed: Fuzzed, family: str, data: st.DataObject) -> None:
    models = [m for m in fuzzed.methods if not m.path.startswith(("/grpc.", "/protoreg."))]
    # half the calls go to the models' methods, where most of protoreg's own code runs
    method = data.draw(st.one_of(st.sampled_from(models), st.sampled_from(fuzzed.methods)), label="method")
    strategy = _other_type(fuzzed) if family == "other_type" else FAMILIES[family]
    payload = strategy(method.request)
    if method.request_streaming:
        payloads = data.draw(st.lists(payload, max_size=3), label="payloads")
    else:
        payloads = [data.draw(payload, label="payload")]
    assert_acceptable(fuzzed, method, payloads)


ALL_FAMILIES = [*FAMILIES, "other_type"]
FUZZ = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))
# examples per family in the default run and in the slow one; a message over the size limit
# takes gRPC about half a second to refuse, so "huge" gets fewer
EXAMPLES = {"huge": 8, "valid": 60}
SLOW_EXAMPLES = {"huge": 80}


def _run(fuzzed: Fuzzed, family: str, examples: int) -> None:
    @settings(FUZZ, max_examples=examples)
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        _fuzz(fuzzed, family, data)

    fuzz()


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_bad_input_never_breaks_the_server(fuzzed: Fuzzed, family: str) -> None:
    _run(fuzzed, family, EXAMPLES.get(family, 25))


@pytest.mark.slow
@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_bad_input_never_breaks_the_server_long(fuzzed: Fuzzed, family: str) -> None:
    _run(fuzzed, family, SLOW_EXAMPLES.get(family, 400))


# -- what the fuzzer found, pinned --------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "seconds", "nanos"),
    [
        ("when", 10**15, 0),  # Timestamp after year 9999: ValueError in ToDatetime
        ("when", 0, 2_000_000_000),  # Timestamp nanos over a second
        ("when", -(2**63), 0),
        ("wait", 10**15, 0),  # Duration past timedelta's range: OverflowError in ToTimedelta
        ("wait", -(2**63), 0),
    ],
)
def test_out_of_range_timestamp_or_duration_is_invalid_argument(
    fuzzed: Fuzzed, field: str, seconds: int, nanos: int
) -> None:
    """Found by the fuzzer: these were INTERNAL (an uncaught ValueError or OverflowError)."""
    request = fuzzed.tree.message_class("tree_model.v1.PredictRequest")(name="n")
    value = getattr(request, field)
    value.seconds, value.nanos = seconds, nanos
    with pytest.raises(grpc.RpcError) as caught:
        raw_call(fuzzed.channel, f"{TREE}/Predict", request.SerializeToString(), timeout=CALL_TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith(f"invalid request: {field}: not a valid google.protobuf.")
    assert_still_serving(fuzzed)


@pytest.mark.parametrize(
    "path",
    [
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    ],
)
def test_undecodable_request_to_a_standard_service_is_invalid_argument(fuzzed: Fuzzed, path: str) -> None:
    """Found by the fuzzer: gRPC answered these INTERNAL ("Exception deserializing request!")."""
    (method,) = [m for m in fuzzed.methods if m.path == path]
    code, details = send(fuzzed.channel, method, [b"\xff\xff\xff"])
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith(f"request bytes are not a valid request of {path}")
    assert_still_serving(fuzzed)


def test_deep_nesting_within_the_limit_is_served_and_beyond_it_invalid(fuzzed: Fuzzed) -> None:
    request = fuzzed.tree.message_class("tree_model.v1.PredictRequest")(name="deep")
    node = request.tree  # type: ignore[attr-defined]
    for _ in range(90):
        node = node.children.add()
    data = raw_call(fuzzed.channel, f"{TREE}/Predict", request.SerializeToString(), timeout=CALL_TIMEOUT)
    response = fuzzed.tree.message_class("tree_model.v1.PredictResponse").FromString(data)
    depth, node = 0, response.tree  # type: ignore[attr-defined]
    while node.children:
        depth, node = depth + 1, node.children[0]
    assert depth == 90
    tree_number = request.DESCRIPTOR.fields_by_name["tree"].number
    children = request.DESCRIPTOR.fields_by_name["tree"].message_type.fields_by_name["children"].number
    body = b""
    for _ in range(500):
        body = length_delimited(children, body)
    code, details = send(fuzzed.channel, _method(fuzzed, f"{TREE}/Predict"), [length_delimited(tree_number, body)])
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details


def _method(fuzzed: Fuzzed, path: str) -> Method:
    (method,) = [m for m in fuzzed.methods if m.path == path]
    return method


def test_every_method_is_fuzzed(fuzzed: Fuzzed) -> None:
    """The catalogue covers what reflection lists, so a new service cannot escape the fuzzer."""
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    listed = set(ProtoReflectionDescriptorDatabase(fuzzed.channel).get_services())
    pool_services = {fuzzed.tree.pool.FindServiceByName(name) for name in listed}
    expected = {f"/{s.full_name}/{m.name}" for s in pool_services for m in s.methods}
    assert expected == {m.path for m in fuzzed.methods}


def test_the_fuzz_models_cannot_fail_on_purpose() -> None:
    """Any INTERNAL seen here must be protoreg's: the fuzzed models have no hook to raise."""
    for model in SERVED:
        assert not {"fail", "sleep", "started_marker"} & set(model.input_schema.model_fields)


def test_health_list_answers_every_service(fuzzed: Fuzzed) -> None:
    """Found by the fuzzer: reflection advertises Health/List but gRPC's servicer was UNIMPLEMENTED."""
    data = raw_call(fuzzed.channel, "/grpc.health.v1.Health/List", b"", timeout=CALL_TIMEOUT)
    statuses = {name: r.status for name, r in health_pb2.HealthListResponse.FromString(data).statuses.items()}
    served = {r.service.full_name for r in fuzzed.tree.releases.values()}
    assert statuses == dict.fromkeys(
        {"", "protoreg.registry.v1.RegistryService", *served}, health_pb2.HealthCheckResponse.SERVING
    )


def test_many_bad_items_are_invalid_argument_with_a_bounded_status(fuzzed: Fuzzed) -> None:
    """Found by the fuzzer: 300 bad items in a 603-byte request came back RESOURCE_EXHAUSTED,
    because one violation per item overflowed the client's 8 KiB limit on trailing metadata."""
    cls = fuzzed.tree.message_class("tree_model.v1.PredictRequest")
    one = cls()
    one.points.add()  # type: ignore[attr-defined]  # a Point without its required x
    data = cls(name="n").SerializeToString() + one.SerializeToString() * 300
    with pytest.raises(grpc.RpcError) as caught:
        raw_call(fuzzed.channel, f"{TREE}/Predict", data, timeout=CALL_TIMEOUT)
    code, details = caught.value.code(), caught.value.details() or ""
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    violations = [(v.field, v.description) for v in bad.field_violations]
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("invalid request: points[0].x: Field required; points[1].x: Field required")
    assert violations[:2] == [("points[0].x", "Field required"), ("points[1].x", "Field required")]
    assert violations[-1] == ("(request)", f"{300 - (len(violations) - 1)} more violations not shown")
    assert len(violations) <= 21


@pytest.mark.parametrize("method", ["ListReleases", "GetFieldMap", "GetProto"])
@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("x" * 20000, grpc.StatusCode.NOT_FOUND),
        ("x" * 20000 + "/", grpc.StatusCode.INVALID_ARGUMENT),
        ("Iris_Model", grpc.StatusCode.INVALID_ARGUMENT),
        ("tree_model\n", grpc.StatusCode.INVALID_ARGUMENT),
        ("../../etc/passwd", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_an_unknown_or_malformed_model_name_is_answered_briefly(
    fuzzed: Fuzzed, method: str, name: str, code: grpc.StatusCode
) -> None:
    """Found by the fuzzer: the NOT_FOUND message quoted the whole name, and a long one overflowed
    the client's limit on trailing metadata (RESOURCE_EXHAUSTED). A name that cannot be a model's is
    INVALID_ARGUMENT (``fullmatch``: the pattern's ``$`` would let a final newline in); either way
    the name is quoted short."""
    request = fuzzed.tree.message_class(f"protoreg.registry.v1.{method}Request")(model=name)
    path = f"/protoreg.registry.v1.RegistryService/{method}"
    with pytest.raises(grpc.RpcError) as caught:
        raw_call(fuzzed.channel, path, request.SerializeToString(), timeout=CALL_TIMEOUT)
    assert caught.value.code() == code
    details = caught.value.details() or ""
    assert len(details) < 200
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert "is not a model name; model names are lower_snake_case" in details
