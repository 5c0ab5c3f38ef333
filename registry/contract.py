"""The contract of a field beyond its wire type: default, bounds, lengths, pattern, choices, deprecation.

Requiredness lives on the field itself (``FieldSpec.required``, ``ir.Field.required``); everything
else pydantic checks about a value is a :class:`Contract`. This module owns reading it from a
pydantic ``FieldInfo`` (:func:`read_contract`), its form in release snapshots
(:func:`contract_to_dict`, :func:`contract_from_dict`), comparing two contracts facet by facet
(:func:`compare_contracts`, with what can be proved about regular expressions in
:func:`pattern_relation`), and saying it in plain words (:func:`describe`).

A snapshot registered before protoreg recorded contracts has none (``ir.Field.contract`` is
``None``): nothing is guessed about it, and the checker says so (``CONTRACT_NOT_RECORDED``).

What is covered is what pydantic expresses as field metadata: ``gt``/``ge``/``lt``/``le`` and
``multiple_of`` on numbers, ``min_length``/``max_length`` on ``str``, ``bytes``, lists and
dicts, ``pattern`` on strings, ``Literal`` and enum membership (``choices``), the default and
``deprecated``. Custom validators are code, not data: they are not part of the recorded contract.
"""

from __future__ import annotations

import json
import math
import re
import typing
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

Number = int | float
Relation = Literal["same", "tighter", "looser", "changed"]

# The keys of a contract as snapshots and ``protoreg fields --format json`` write them; pydantic's names.
BOUND_KEYS = ("gt", "ge", "lt", "le")
CONSTRAINT_KEYS = (*BOUND_KEYS, "multiple_of", "min_length", "max_length", "pattern")


@dataclass(frozen=True)
class Contract:
    """What pydantic checks about one field's value, besides its type and requiredness.

    ``default`` is the default as canonical JSON text (``None``: the field has no default, it is
    required); ``choices`` are the values a ``Literal`` or an ``Enum`` accepts, as pydantic values;
    ``deprecated`` is the deprecation message (``""`` when deprecated without one), ``None`` when
    the field is not deprecated.
    """

    default: str | None = None
    gt: Number | None = None
    ge: Number | None = None
    lt: Number | None = None
    le: Number | None = None
    multiple_of: Number | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    choices: tuple[str, ...] = ()
    deprecated: str | None = None

    @property
    def constraints(self) -> dict[str, Any]:
        """The constraints that are set, by pydantic's names, in a fixed order."""
        return {key: getattr(self, key) for key in CONSTRAINT_KEYS if getattr(self, key) is not None}

    @property
    def default_value(self) -> Any:
        return None if self.default is None else json.loads(self.default)


NO_CONTRACT = Contract()


# -- reading pydantic ------------------------------------------------------------------------


def _number(value: Any) -> Number | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None  # bounds on dates or decimals are not recorded (see the module docstring)
    return value


def _collect(items: Iterable[Any], found: dict[str, Any]) -> None:
    from pydantic.fields import FieldInfo

    for item in items:
        if isinstance(item, FieldInfo):
            _collect(item.metadata, found)
            continue
        for key in CONSTRAINT_KEYS:
            value = getattr(item, key, None)
            if value is None:
                continue
            if key == "pattern":
                found[key] = value.pattern if isinstance(value, re.Pattern) else str(value)
            elif key == "min_length" and int(value) == 0:
                continue  # annotated_types.Len(max_length=n) says min_length=0: no constraint at all
            elif key in ("min_length", "max_length"):
                found[key] = int(value)
            elif _number(value) is not None:
                found[key] = value


def _annotated_metadata(tp: Any) -> Iterator[Any]:
    """Metadata of ``Annotated`` layers inside ``Optional[...]`` (pydantic only lifts the outer one)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        yield from tp.__metadata__
        yield from _annotated_metadata(typing.get_args(tp)[0])
    elif origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        for arg in typing.get_args(tp):
            if arg is not type(None):
                yield from _annotated_metadata(arg)


def canonical_json(value: Any) -> str:
    from pydantic_core import to_jsonable_python

    return json.dumps(to_jsonable_python(value, fallback=repr), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)


def _deprecation(info: Any) -> str | None:
    value = getattr(info, "deprecated", None)  # pydantic 2.7+
    if value is None or value is False:
        return None
    if value is True:
        return ""
    message = getattr(value, "message", value)  # warnings.deprecated instances carry .message
    return str(message)


def read_contract(info: Any, *, required: bool, choices: tuple[str, ...] = ()) -> Contract:
    """The contract of one pydantic field (``info`` is its ``FieldInfo``)."""
    found: dict[str, Any] = {}
    _collect(info.metadata, found)
    _collect(_annotated_metadata(info.annotation), found)
    default: str | None = None
    if not required:
        if info.default_factory is None:
            value = info.default  # only read, so no copy (get_default's deep copy cost a check 0.27 s)
        else:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    value = info.get_default(call_default_factory=True)
            except TypeError:  # a default_factory that reads the other fields: no value to record
                factory = getattr(info.default_factory, "__name__", "default_factory")
                value = f"<computed by {factory}()>"
        default = canonical_json(value)
    return Contract(default=default, choices=choices, deprecated=_deprecation(info), **found)


# -- snapshots -------------------------------------------------------------------------------


def contract_to_dict(contract: Contract) -> dict[str, Any]:
    """The snapshot form: only what is set, pydantic's names, the default as a JSON value."""
    data: dict[str, Any] = dict(contract.constraints)
    if contract.choices:
        data["choices"] = list(contract.choices)
    if contract.default is not None:
        data["default"] = contract.default_value
    if contract.deprecated is not None:
        data["deprecated"] = contract.deprecated
    return data


def contract_from_dict(data: Mapping[str, Any]) -> Contract:
    return Contract(
        default=canonical_json(data["default"]) if "default" in data else None,
        choices=tuple(data.get("choices", ())),
        deprecated=data.get("deprecated"),
        **{key: data[key] for key in CONSTRAINT_KEYS if data.get(key) is not None},
    )


# -- comparing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FacetChange:
    """One facet of a contract that changed, and whether it accepts fewer values, more, or neither."""

    facet: str  # "lower bound", "upper bound", "multiple", "minimum length", "maximum length", "pattern"
    relation: Relation
    before: str
    after: str
    note: str = ""


def _lower(c: Contract, integral: bool) -> tuple[Number, bool] | None:
    """The lower bound as (value, inclusive), the tighter of ``gt`` and ``ge``; integers made inclusive."""
    options: list[tuple[Number, bool]] = []
    if c.gt is not None:
        options.append((math.floor(c.gt) + 1, True) if integral else (c.gt, False))
    if c.ge is not None:
        options.append((math.ceil(c.ge), True) if integral else (c.ge, True))
    return max(options, key=lambda b: (b[0], not b[1])) if options else None


def _upper(c: Contract, integral: bool) -> tuple[Number, bool] | None:
    options: list[tuple[Number, bool]] = []
    if c.lt is not None:
        options.append((math.ceil(c.lt) - 1, True) if integral else (c.lt, False))
    if c.le is not None:
        options.append((math.floor(c.le), True) if integral else (c.le, True))
    return min(options, key=lambda b: (b[0], b[1])) if options else None


def _num(value: Number) -> str:
    return repr(value)


def bound_text(c: Contract, side: Literal["lower", "upper"]) -> str:
    keys = ("gt", "ge") if side == "lower" else ("lt", "le")
    signs = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    parts = [f"{signs[k]} {_num(getattr(c, k))}" for k in keys if getattr(c, k) is not None]
    return " and ".join(parts) or "none"


def _order(before: Any, after: Any, tighter_when_greater: bool) -> Relation:
    if before == after:
        return "same"
    return "tighter" if (after > before) == tighter_when_greater else "looser"


def _bound_relation(before: tuple[Number, bool] | None, after: tuple[Number, bool] | None, lower: bool) -> Relation:
    if before == after:
        return "same"
    if before is None:
        return "tighter"
    if after is None:
        return "looser"
    # A lower bound is tighter when greater (exclusive beats inclusive at one value); an upper one
    # when smaller.
    if lower:
        return _order((before[0], not before[1]), (after[0], not after[1]), True)
    return _order((before[0], before[1]), (after[0], after[1]), False)


def _fraction(value: Number) -> Fraction:
    return Fraction(str(value)) if isinstance(value, float) else Fraction(value)


def _multiple_relation(before: Number | None, after: Number | None) -> Relation:
    if before == after:
        return "same"
    if before is None:
        return "tighter"
    if after is None:
        return "looser"
    b, a = _fraction(before), _fraction(after)
    if b and (a / b).denominator == 1:
        return "tighter"  # every multiple of the new step is a multiple of the old one
    if a and (b / a).denominator == 1:
        return "looser"
    return "changed"


def compare_contracts(before: Contract, after: Contract, *, integral: bool) -> list[FacetChange]:
    """How each constraint facet changed from ``before`` to ``after`` (facets that did not are left out).

    ``integral`` says the field holds integers, so ``gt=4`` and ``ge=5`` are the same bound.
    """
    changes: list[FacetChange] = []
    for side, lower in (("lower", True), ("upper", False)):
        getter = _lower if lower else _upper
        relation = _bound_relation(getter(before, integral), getter(after, integral), lower)
        if relation != "same":
            changes.append(FacetChange(f"{side} bound", relation, bound_text(before, side),  # type: ignore[arg-type]
                                       bound_text(after, side)))  # type: ignore[arg-type]
    relation = _multiple_relation(before.multiple_of, after.multiple_of)
    if relation != "same":
        changes.append(FacetChange("multiple", relation, _opt(before.multiple_of), _opt(after.multiple_of)))
    for key, facet, tighter_when_greater, missing in (
        ("min_length", "minimum length", True, 0),
        ("max_length", "maximum length", False, math.inf),
    ):
        b, a = getattr(before, key), getattr(after, key)
        relation = _order(missing if b is None else b, missing if a is None else a, tighter_when_greater)
        if relation != "same":
            changes.append(FacetChange(facet, relation, _opt(b), _opt(a)))
    relation, note = pattern_relation(before.pattern, after.pattern)
    if relation != "same":
        changes.append(FacetChange("pattern", relation, _opt(before.pattern), _opt(after.pattern), note))
    return changes


def _opt(value: object) -> str:
    return "none" if value is None else str(value)


# -- regular expressions ---------------------------------------------------------------------
# pydantic searches a string for its pattern (a match anywhere accepts it, unless the pattern is
# anchored). What protoreg proves about two patterns, nothing more:
#   * equal strings accept the same strings;
#   * a pattern that matches the empty string anywhere ("", ".*") accepts every string;
#   * a search for A|B accepts exactly what a search for A or one for B accepts, so when both
#     patterns are alternations (inside the same anchors) and one's branches are a subset of the
#     other's, parsed by Python's own regular expression parser, that one accepts fewer strings.
# Anything else is reported as a change, which needs a major bump either way.


def _parse(pattern: str) -> list[tuple[Any, Any]] | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import re._parser as sre_parse  # type: ignore[import-not-found,unused-ignore]

            return list(sre_parse.parse(pattern))
    except Exception:  # noqa: BLE001 - any pattern Python cannot parse is simply not proved
        return None


def _universal(items: list[tuple[Any, Any]]) -> bool:
    """A pattern that a search matches on every string: empty, or only ``X*`` items."""
    import re._constants as c  # type: ignore[import-not-found,unused-ignore]

    return all(op in (c.MAX_REPEAT, c.MIN_REPEAT) and av[0] == 0 for op, av in items)


def _branches(items: list[tuple[Any, Any]]) -> tuple[str, frozenset[str]]:
    """(anchors, branches): a pattern as the set of alternatives it searches for."""
    import re._constants as c  # type: ignore[import-not-found,unused-ignore]

    head, tail = "", ""
    body = list(items)
    if body and body[0][0] == c.AT:
        head = str(body.pop(0))
    if body and body[-1][0] == c.AT:
        tail = str(body.pop())
    if len(body) == 1 and body[0][0] == c.SUBPATTERN and not body[0][1][1] and not body[0][1][2]:
        # (?:...) or (...) with no flags: look inside, a group around an alternation is common
        body = list(body[0][1][3])
    if len(body) == 1 and body[0][0] == c.BRANCH:
        return head + "|" + tail, frozenset(str(list(b)) for b in body[0][1][1])
    if len(body) == 1 and body[0][0] == c.IN and all(op == c.LITERAL for op, _ in body[0][1]):
        # the parser turns a|b of single characters into [ab]: one branch per character
        return head + "|" + tail, frozenset(str([item]) for item in body[0][1])
    return head + "|" + tail, frozenset({str(body)})


def pattern_relation(before: str | None, after: str | None) -> tuple[Relation, str]:
    """Whether ``after`` accepts the same strings as ``before``, fewer, more, or neither provably."""
    if before == after:
        return "same", ""
    parsed_before = _parse(before) if before is not None else []
    parsed_after = _parse(after) if after is not None else []
    if parsed_before is None or parsed_after is None:
        return "changed", "a pattern could not be parsed, so nothing about it is proved"
    any_before, any_after = _universal(parsed_before), _universal(parsed_after)
    if any_before and any_after:
        return "same", ""
    if any_before:
        return "tighter", ""
    if any_after:
        return "looser", ""
    assert before is not None and after is not None
    anchors_b, branches_b = _branches(parsed_before)
    anchors_a, branches_a = _branches(parsed_after)
    if anchors_b == anchors_a:
        if branches_a == branches_b:
            return "same", ""
        if branches_b < branches_a:
            return "looser", ""
        if branches_a < branches_b:
            return "tighter", ""
    return "changed", "protoreg cannot prove that either pattern accepts everything the other does"


# -- plain words -----------------------------------------------------------------------------


def _range_words(c: Contract) -> list[str]:
    words = {"gt": "greater than", "ge": "at least", "lt": "less than", "le": "at most"}
    parts = [f"{words[k]} {_num(getattr(c, k))}" for k in BOUND_KEYS if getattr(c, k) is not None]
    out = []
    if parts:
        out.append("Must be " + " and ".join(parts) + ".")
    if c.multiple_of is not None:
        out.append(f"Must be a multiple of {_num(c.multiple_of)}.")
    return out


def _length_words(c: Contract, unit: str) -> list[str]:
    if c.min_length is not None and c.max_length is not None:
        if c.min_length == c.max_length:
            return [f"Exactly {c.min_length} {unit}."]
        return [f"Between {c.min_length} and {c.max_length} {unit}."]
    if c.min_length is not None:
        return [f"At least {c.min_length} {unit}."]
    if c.max_length is not None:
        return [f"At most {c.max_length} {unit}."]
    return []


def default_words(default: str) -> str:
    value = json.loads(default)
    if value is None:
        return "absent means no value"
    if value == [] or value == {}:
        return "absent means empty"
    return f"when absent, the model uses {default}"


def describe(contract: Contract, *, required: bool, unit: str, implicit: bool = False) -> list[str]:
    """The contract in plain words, one sentence a line: requiredness, range, lengths, pattern,
    default and deprecation. ``unit`` names what a length counts (``characters``, ``bytes``, ``items``);
    ``implicit`` is a field with implicit presence (adopted), where absent is the zero value."""
    lines: list[str] = []
    if implicit:
        lines.append("Implicit presence: a zero value is not sent, and absent reads as zero.")
    elif required:
        lines.append("Required.")
    elif contract.default is not None:
        lines.append(f"Optional; {default_words(contract.default)}.")
    else:
        lines.append("Optional.")
    lines += _range_words(contract)
    lines += _length_words(contract, unit)
    if contract.pattern is not None:
        lines.append(f"Must match the regular expression {json.dumps(contract.pattern, ensure_ascii=False)}.")
    if contract.deprecated is not None:
        reason = " ".join(contract.deprecated.split()).rstrip(".")
        lines.append(f"Deprecated: {reason}." if reason else "Deprecated.")
    return lines


# -- the declaration that keeps a renamed field's number ---------------------------------------

_PYTHON_SCALARS = {"double": "float", "float": "float", "string": "str", "bytes": "bytes", "bool": "bool",
                   "google.protobuf.Timestamp": "datetime", "google.protobuf.Duration": "timedelta"}


def _python_type(proto: str, kind: str) -> str:
    if proto in _PYTHON_SCALARS:
        return _PYTHON_SCALARS[proto]
    if kind == "scalar":
        return "int"  # every other scalar is an integer type
    return proto  # the enum or message class, named as the proto type


def renamed_from_line(field: Any, old_name: str, message: str) -> str:
    """The pydantic declaration of ``field`` (an ``ir.Field`` of ``message``) that says it was
    ``old_name``: type, default, constraints, description and ``renamed_from``, ready to paste."""
    from .naming import literal_enum_name

    contract = field.contract or NO_CONTRACT
    element = _python_type(field.type, field.kind)
    if field.kind == "enum" and contract.choices and field.type == literal_enum_name(message, field.name):
        element = f"Literal[{', '.join(json.dumps(c) for c in contract.choices)}]"
    if field.label == "repeated":
        annotation = f"list[{element}]"
    elif field.label == "map":
        annotation = f"dict[{_python_type(field.key_type or 'string', 'scalar')}, {element}]"
    else:
        annotation = element
    if not field.required and contract.default == "null":
        annotation = f"{annotation} | None"
    args: list[str] = []
    if not field.required and contract.default is not None:
        args.append(repr(contract.default_value))
    args += [f"{key}={value!r}" for key, value in contract.constraints.items()]
    if field.description:
        args.append(f"description={field.description!r}")
    extra: dict[str, Any] = {"renamed_from": old_name}
    if field.kind == "scalar" and field.type not in _PYTHON_SCALARS and field.type != "int64":
        extra["type"] = field.type
    args.append(f"json_schema_extra={{\"protoreg\": {json.dumps(extra)}}}")
    return f"{field.name}: {annotation} = Field({', '.join(args)})"
