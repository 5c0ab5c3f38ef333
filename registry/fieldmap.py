"""The field map of a release: the JSON form that ``protoreg fields --format json`` prints.

One function, shared by the ``fields`` command and the registry browser's field ledger
(:mod:`protoreg.registry.ledger`), so the two can never disagree. Names of messages and enums are full
names inside the package; reserved ranges are expanded to single numbers. Each field carries its
contract (:mod:`protoreg.registry.contract`), ``null`` for releases registered before protoreg
recorded contracts.
"""

from __future__ import annotations

from typing import Any

from . import ir
from .contract import contract_to_dict


def field_map(package: ir.Package) -> dict[str, Any]:
    """The JSON form of ``protoreg fields``: names are full names inside the package."""
    return {
        "model": package.model,
        "version": package.version,
        "package": package.package,
        "messages": [
            {
                "name": m.name,
                "fields": [
                    {"name": f.name, "number": f.number, "type": f.proto_type, "label": f.label,
                     "required": f.required,
                     # default, constraints, choices, deprecation; null: not recorded (older release)
                     "contract": None if f.contract is None else contract_to_dict(f.contract)}
                    for f in m.fields
                ],
                "reserved_numbers": list(ir.expand_ranges(m.reserved_numbers)),
                "reserved_names": list(m.reserved_names),
            }
            for m in package.messages
        ],
        "enums": [
            {
                "name": e.name,
                "values": [{"name": v.name, "number": v.number} for v in e.values],
                "reserved_numbers": list(ir.expand_ranges(e.reserved_numbers)),
                "reserved_names": list(e.reserved_names),
            }
            for e in package.enums
        ],
    }
