"""A field's contract as protovalidate (``buf.validate``) rules, for renderings that ask for them.

With ``[tool.protoreg] protovalidate = true``, ``protoreg render`` writes these rules as field
options, so Go, Java, TypeScript and Python clients can refuse a bad value before they send it.
The server does not read them: it keeps validating with pydantic, and
``tests/test_protovalidate.py`` shows both refuse the same values.

What maps (pydantic -> protovalidate): requiredness -> ``required``; ``gt``/``ge``/``lt``/``le``
on numbers -> ``gt``/``gte``/``lt``/``lte`` of the field's scalar type; ``multiple_of`` on
integers -> a CEL rule ``this % n == 0``; ``min_length``/``max_length`` -> ``min_len``/``max_len``
on strings (code points, as Python counts) and bytes, ``min_items``/``max_items`` on lists,
``min_pairs``/``max_pairs`` on maps; ``pattern`` -> ``pattern`` on strings (both search the
string, RE2 and Rust's regex share the common syntax). Not mapped, and said so in the rendered
comment: ``multiple_of`` on floating-point numbers, which CEL has no remainder for.
"""

from __future__ import annotations

import json
import math

from . import ir, typemap
from .contract import Contract

RULE = "(buf.validate.field)"
ENUM_DEFINED_SET = "enum: {defined_only: true, not_in: [0]}"


def _literal(value: float | int, integral: bool) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if integral:
        return str(int(value))
    return repr(float(value))


def _in_range(proto_type: str, value: float | int) -> bool:
    bits = 32 if proto_type.endswith("32") else 64
    low, high = (0, 2**bits) if proto_type.startswith(("uint", "fixed")) else (-(2 ** (bits - 1)), 2 ** (bits - 1))
    return bool(low <= value < high)


def _numeric(f: ir.Field, c: Contract) -> list[str]:
    integral = typemap.is_integral(f.type)
    unsigned = f.type.startswith(("uint", "fixed"))
    parts: list[str] = []
    bounds = (("gt", c.gt, math.floor), ("gte", c.ge, math.ceil), ("lt", c.lt, math.ceil), ("lte", c.le, math.floor))
    for key, value, rounding in bounds:
        if value is None:
            continue
        if integral and isinstance(value, float) and not value.is_integer():
            value = rounding(value)  # an integer bound that accepts the same integers
        if integral and not _in_range(f.type, value):
            continue  # beyond what the type holds (protoc would refuse the literal); pydantic still checks
        text = _literal(value, integral)
        if text is not None:
            parts.append(f"{key}: {text}")
    rules = [f"{RULE}.{f.type} = {{{', '.join(parts)}}}"] if parts else []
    if c.multiple_of is not None and integral and float(c.multiple_of).is_integer() and c.multiple_of:
        step = int(c.multiple_of)
        suffix = "u" if unsigned else ""
        rules.append(
            f'{RULE}.cel = {{id: "multiple_of", message: "must be a multiple of {step}", '
            f'expression: "this % {step}{suffix} == 0{suffix}"}}'
        )
    return rules


def field_rules(f: ir.Field) -> list[str]:
    """The ``buf.validate`` options of one field (``[]`` when it has no recorded contract)."""
    c = f.contract
    if c is None:
        return []
    rules: list[str] = []
    # With implicit presence an absent field is its zero value, which the server accepts: a
    # protovalidate ``required`` (non-zero) would refuse what the server answers.
    if f.required and f.label == "optional":
        rules.append(f"{RULE}.required = true")
    if f.label == "repeated":
        parts = [f"{key}: {value}" for key, value in (("min_items", c.min_length), ("max_items", c.max_length))
                 if value is not None]
        if f.kind == "enum":
            parts.append(f"items: {{{ENUM_DEFINED_SET}}}")  # the server refuses UNSPECIFIED items too
        if parts:
            rules.append(f"{RULE}.repeated = {{{', '.join(parts)}}}")
    elif f.label == "map":
        parts = [f"{key}: {value}" for key, value in (("min_pairs", c.min_length), ("max_pairs", c.max_length))
                 if value is not None]
        if f.kind == "enum":
            parts.append(f"values: {{{ENUM_DEFINED_SET}}}")  # as for list items
        if parts:
            rules.append(f"{RULE}.map = {{{', '.join(parts)}}}")
    elif f.kind == "scalar" and f.type in ("string", "bytes"):
        parts = [f"{key}: {value}" for key, value in (("min_len", c.min_length), ("max_len", c.max_length))
                 if value is not None]
        if c.pattern is not None and f.type == "string":
            parts.append(f"pattern: {json.dumps(c.pattern, ensure_ascii=False)}")
        if parts:
            rules.append(f"{RULE}.{f.type} = {{{', '.join(parts)}}}")
    elif f.kind == "scalar" and f.type != "bool":
        rules += _numeric(f, c)
    elif f.kind == "enum":
        # UNSPECIFIED counts as absent on the server: refused where the model needs a value
        zero = ", not_in: [0]" if f.required and f.label == "optional" else ""
        rules.append(f"{RULE}.enum = {{defined_only: true{zero}}}")
    return rules


def unmapped(f: ir.Field) -> list[str]:
    """Constraints of ``f`` that protovalidate cannot state (the server still checks them)."""
    c = f.contract
    if c is None or c.multiple_of is None or f.kind != "scalar" or typemap.is_integral(f.type):
        return []
    return [f"multiple_of {c.multiple_of!r} is checked by the server only"]
