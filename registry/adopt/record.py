"""What an adoption keeps for the life of a model, and how it shapes every numbering after it.

An :class:`Adoption` is stored with the model (table ``adoptions``, carried by the text form). Every
numbering of the model goes through :func:`number_schema`, which numbers the schema as usual and
then applies the adoption: fields that had implicit presence in the existing API keep it in every
release of the adopted major line (so the rendering stays wire-, JSON- and source-compatible with
what clients compiled), the legacy reservations (fields of the existing proto the model lacks, and
the ranges and names it reserved) stay reserved in every release, fresh numbers stay above all of
them, and the adopted line's files name the legacy API they stand for (:class:`~protoreg.registry.ir.Legacy`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from .. import ir
from ..errors import NumberingError
from ..numbering import History, Numbered, allocate_numbers
from ..schema import ModelSchema

ScopeKind = Literal["message", "enum"]


@dataclass(frozen=True)
class LegacyReservation:
    """Numbers and names one message or enum of the model (by its name in the model) keeps
    reserved because the existing API used or reserved them."""

    kind: ScopeKind
    scope: str
    numbers: tuple[ir.ReservedRange, ...] = ()
    names: tuple[str, ...] = ()

    @property
    def floor(self) -> int:
        """The highest number reserved: fresh numbers are allocated above it."""
        return max((r.end for r in self.numbers), default=0)


@dataclass(frozen=True)
class Adoption:
    """A model's first release came from an existing API."""

    version: str  # the adopted release
    source: str  # the .proto file that defines the request message
    request: str  # full names of the legacy messages
    response: str
    rpc: str = ""  # the legacy method path served with the adopted line ("" when none)
    implicit: tuple[tuple[str, int], ...] = ()  # (message, number) of fields with implicit presence
    reserved: tuple[LegacyReservation, ...] = ()
    files: tuple[tuple[str, str], ...] = ()  # the legacy .proto files: (path, text)

    @property
    def major(self) -> int:
        return int(self.version.split(".", 1)[0])

    @property
    def legacy(self) -> ir.Legacy:
        return ir.Legacy(self.source, self.request, self.response, self.rpc, self.files)

    @property
    def floors(self) -> dict[tuple[str, str], int]:
        return {(r.kind, r.scope): r.floor for r in self.reserved if r.floor}

    def describe(self) -> str:
        """The first change line of the adopted release (what ``history`` shows)."""
        text = f"adopted from {self.source}: {self.request} -> PredictRequest, {self.response} -> PredictResponse"
        return text + (f"; legacy RPC {self.rpc}" if self.rpc else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "source": self.source,
            "request": self.request,
            "response": self.response,
            "rpc": self.rpc,
            "implicit": [[message, number] for message, number in self.implicit],
            "reserved": [
                {"kind": r.kind, "scope": r.scope, "numbers": [[n.start, n.end] for n in r.numbers],
                 "names": list(r.names)}
                for r in self.reserved
            ],
            "files": [[path, text] for path, text in self.files],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Adoption:
        return cls(
            version=str(data["version"]),
            source=str(data["source"]),
            request=str(data["request"]),
            response=str(data["response"]),
            rpc=str(data.get("rpc", "")),
            implicit=tuple((str(m), int(n)) for m, n in data.get("implicit", [])),
            reserved=tuple(
                LegacyReservation(
                    "enum" if r["kind"] == "enum" else "message",
                    str(r["scope"]),
                    tuple(ir.ReservedRange(int(a), int(b)) for a, b in r.get("numbers", [])),
                    tuple(str(n) for n in r.get("names", [])),
                )
                for r in data.get("reserved", [])
            ),
            files=tuple((str(p), str(t)) for p, t in data.get("files", [])),
        )


def merge_ranges(ranges: Iterable[ir.ReservedRange]) -> tuple[ir.ReservedRange, ...]:
    """Sorted, merged inclusive ranges (without expanding them: a legacy range may run to max)."""
    merged: list[ir.ReservedRange] = []
    for r in sorted(ranges, key=lambda r: (r.start, r.end)):
        if merged and r.start <= merged[-1].end + 1:
            merged[-1] = ir.ReservedRange(merged[-1].start, max(merged[-1].end, r.end))
        else:
            merged.append(r)
    return tuple(merged)


def number_schema(history: History, schema: ModelSchema, adoption: Adoption | None) -> Numbered:
    """Number ``schema`` against ``history``, then apply the model's adoption (if it has one)."""
    if adoption is None:
        return allocate_numbers(history, schema)
    numbered = allocate_numbers(history, schema, adoption.floors)
    return replace(numbered, package=apply_adoption(adoption, numbered.package))


def apply_adoption(adoption: Adoption, package: ir.Package) -> ir.Package:
    """``package`` as the adopted model renders it: implicit presence and the legacy header on the
    adopted major line, the legacy reservations on every line."""
    adopted_line = package.major == adoption.major
    implicit = set(adoption.implicit) if adopted_line else set()
    reserved = {(r.kind, r.scope): r for r in adoption.reserved}
    messages = []
    for message in package.messages:
        fields = tuple(
            replace(f, label="singular") if (message.name, f.number) in implicit and f.label == "optional"
            and f.kind != "message" else f
            for f in message.fields
        )
        legacy = reserved.get(("message", message.name))
        if legacy is not None:
            for f in fields:
                if f.name in legacy.names:
                    raise NumberingError(
                        f'field "{f.name}" of "{message.name}" has a name the adopted API reserves '
                        f"({adoption.source}); old clients may still send it with another meaning, so choose "
                        "another name"
                    )
            message = replace(
                message,
                reserved_numbers=merge_ranges([*message.reserved_numbers, *legacy.numbers]),
                reserved_names=tuple(sorted(set(message.reserved_names) | set(legacy.names))),
            )
        messages.append(replace(message, fields=fields))
    enums = []
    for enum in package.enums:
        legacy = reserved.get(("enum", enum.name))
        if legacy is not None:
            active = {v.name for v in enum.values}
            clash = sorted(active & set(legacy.names))
            if clash:
                raise NumberingError(
                    f'enum value "{clash[0]}" of "{enum.name}" has a name the adopted API reserves '
                    f"({adoption.source}); choose another value"
                )
            enum = replace(
                enum,
                reserved_numbers=merge_ranges([*enum.reserved_numbers, *legacy.numbers]),
                reserved_names=tuple(sorted(set(enum.reserved_names) | set(legacy.names))),
            )
        enums.append(enum)
    return replace(package, messages=tuple(messages), enums=tuple(enums),
                   legacy=adoption.legacy if adopted_line else package.legacy)
