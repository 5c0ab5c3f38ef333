"""``protoreg.registry.v1.RegistryService``: the served releases, their field maps and ``.proto`` texts.

It answers from what the server compiled at start-up (``proto_versions/``), never from the
registry database and never by reading a file per request: a client can list the models and
releases, read a release's field map, and fetch the exact ``.proto`` text it pins.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from google.protobuf import descriptor_pb2
from google.protobuf.message import Message

from protoreg.registry.naming import MODEL_NAME, REGISTRY_PACKAGE

from .binding import ServedModel, describe_field
from .compile import ProtoTree
from .limits import cut
from .status import Status, abort, invalid
from .unary import UnaryMethod

REGISTRY_SERVICE = f"{REGISTRY_PACKAGE}.RegistryService"


class RegistryServicer:
    """``protoreg.registry.v1.RegistryService``, answered from the served releases only."""

    def __init__(self, models: Sequence[ServedModel], tree: ProtoTree) -> None:
        self.tree = tree
        self.models: dict[str, list[ServedModel]] = {}
        for model in sorted(models, key=lambda m: (m.name, m.release.major)):
            self.models.setdefault(model.name, []).append(model)
        self.cls = {
            name: tree.message_class(f"{REGISTRY_PACKAGE}.{name}")
            for name in (
                "ListModelsRequest", "ListModelsResponse", "ListReleasesRequest", "ListReleasesResponse",
                "GetFieldMapRequest", "GetFieldMapResponse", "GetProtoRequest", "GetProtoResponse",
                "Release", "ModelInfo",
            )
        }
        # Releases never change while serving, so each field map is built once, here.
        self.field_maps = {
            (m.name, m.release.major): self._field_map(m) for lines in self.models.values() for m in lines
        }

    def _methods(self) -> dict[str, tuple[str, Callable[[Any], Message]]]:
        return {
            "ListModels": ("ListModelsRequest", self.list_models),
            "ListReleases": ("ListReleasesRequest", self.list_releases),
            "GetFieldMap": ("GetFieldMapRequest", self.get_field_map),
            "GetProto": ("GetProtoRequest", self.get_proto),
        }

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        return {
            f"/{REGISTRY_SERVICE}/{name}": grpc.unary_unary_rpc_method_handler(self._wrap(request, fn))
            for name, (request, fn) in self._methods().items()
        }

    def unary(self) -> dict[str, UnaryMethod]:
        """The same methods for the other transports (the JSON side)."""

        def answer(fn: Callable[[Any], Message]) -> Callable[[Message, float | None], Awaitable[Message]]:
            async def call(request: Message, _deadline: float | None) -> Message:
                return fn(request)

            return call

        return {
            f"/{REGISTRY_SERVICE}/{name}": UnaryMethod(self.cls[request], answer(fn))
            for name, (request, fn) in self._methods().items()
        }

    def _wrap(self, request_name: str, fn: Callable[[Any], Message]
              ) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]:
        request_class = self.cls[request_name]

        async def call(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
            try:
                try:
                    request = request_class.FromString(data)
                except Exception as error:
                    raise invalid(f"request bytes are not a valid {request_name} ({error})") from error
                return fn(request).SerializeToString()
            except Status as status:
                await abort(context, status)
                raise AssertionError("unreachable") from None  # abort raises

        return call

    def _release(self, model: ServedModel) -> Message:
        release = model.release
        return self.cls["Release"](
            major=release.major,
            version=release.version,
            package=release.package,
            service=model.service_name,
            proto_path=release.path,
        )

    def _lines(self, name: str) -> list[ServedModel]:
        if not MODEL_NAME.fullmatch(name):  # fullmatch: the pattern's "$" would let a final "\n" in
            raise invalid(f'"{cut(name, 64)}" is not a model name; model names are lower_snake_case, '
                          'like "iris_model"')
        if name not in self.models:
            served = ", ".join(sorted(self.models)) or "none"
            raise Status("NOT_FOUND", f'model "{cut(name, 64)}" is not served here (served: {served})')
        return self.models[name]

    def _line(self, name: str, major: int) -> ServedModel:
        lines = self._lines(name)
        if major == 0:
            return lines[-1]
        for model in lines:
            if model.release.major == major:
                return model
        served = ", ".join(str(m.release.major) for m in lines)
        raise Status("NOT_FOUND", f'model "{name}" has no served major line {major} (served: {served})')

    def list_models(self, request: Any) -> Message:
        response = self.cls["ListModelsResponse"]()
        for name, lines in sorted(self.models.items()):
            newest = lines[-1]
            response.models.add(  # type: ignore[attr-defined]
                name=name,
                display_name=newest.display_name,
                description=newest.description,
                releases=[self._release(m) for m in lines],
            )
        return response

    def list_releases(self, request: Any) -> Message:
        lines = self._lines(request.model)
        return self.cls["ListReleasesResponse"](releases=[self._release(m) for m in lines])

    def get_field_map(self, request: Any) -> Message:
        model = self._line(request.model, request.major)
        return self.field_maps[(model.name, model.release.major)]

    def _field_map(self, model: ServedModel) -> Message:
        response = self.cls["GetFieldMapResponse"](release=self._release(model))
        file = model.release.file
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        package = model.release.package
        for msg_proto in proto.message_type:
            msg = file.message_types_by_name[msg_proto.name]
            entry = response.messages.add(name=msg.name)  # type: ignore[attr-defined]
            for fd in msg.fields:
                described = describe_field(fd, package)
                if fd.is_repeated:
                    label = "map" if described.startswith("map<") else "repeated"
                else:
                    label = "optional" if fd.has_presence else "singular"
                entry.fields.add(name=fd.name, number=fd.number, type=described.removeprefix("repeated "), label=label)
            for r in msg_proto.reserved_range:  # end is exclusive in descriptors
                entry.reserved_ranges.add(start=r.start, end=r.end - 1)
            entry.reserved_names.extend(msg_proto.reserved_name)
        for enum_proto in proto.enum_type:
            entry = response.enums.add(name=enum_proto.name)  # type: ignore[attr-defined]
            for value in enum_proto.value:
                entry.values.add(name=value.name, number=value.number)
            for r in enum_proto.reserved_range:  # end is inclusive for enums
                entry.reserved_ranges.add(start=r.start, end=r.end)
            entry.reserved_names.extend(enum_proto.reserved_name)
        return response

    def get_proto(self, request: Any) -> Message:
        model = self._line(request.model, request.major)
        return self.cls["GetProtoResponse"](release=self._release(model), content=model.release.content)
