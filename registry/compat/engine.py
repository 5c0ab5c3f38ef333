"""The rule engine: walks two snapshots once, pairs what belongs together, runs the rules.

Messages, enums and services pair by full name; fields by number (and, for registry history,
leftovers by name, because the registry moves a field to a fresh number when its type changes
incompatibly); enum values by number; RPCs by name. Every pair goes to every rule of its subject
and the hits become :class:`Finding`\\s with the bump the rule requires in the pair's direction.

Checks are transitive by construction: besides the baseline, the engine looks at every earlier
snapshot (the whole registry history of a model) for numbers and names that come back with
another meaning. :func:`check_release` and :func:`check_trees` turn findings into a verdict.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from .. import ir
from ..errors import NotFoundError
from ..versioning import Bump, bump_rank, declared_bump, parse_version
from .findings import Category, Direction, Finding, Level, Report, max_bump
from .rules import (
    HANDLERS,
    RULES_BY_ID,
    EnumPair,
    EnumValuePair,
    FieldPair,
    HistoryPair,
    Holder,
    MessagePair,
    PackagePair,
    Pair,
    ReleasePair,
    ReservedPair,
    RpcPair,
    ServicePair,
    Subject,
    rules_for,
)
from .view import View, build_view, in_ranges, short_name, type_change

CATEGORY_SCOPES: dict[str, tuple[Category, ...]] = {
    # As in buf, a looser category is included in a stricter one.
    "WIRE": ("WIRE",),
    "WIRE_JSON": ("WIRE", "WIRE_JSON"),
    "SOURCE": ("WIRE", "WIRE_JSON", "SOURCE"),
    "SEMANTIC": ("SEMANTIC",),
}


def _merge_directions(*directions: Direction | None) -> Direction:
    present = {d for d in directions if d is not None}
    if len(present) == 1:
        return present.pop()
    return "both"


def _run(subject: Subject, pair: Pair, categories: frozenset[str] | None) -> Iterator[Finding]:
    for rule in rules_for(subject):
        if categories is not None and rule.category not in categories:
            continue
        for hit in HANDLERS[rule.id](pair):
            yield Finding(
                rule=rule.id,
                category=rule.category,
                direction=pair.direction,
                path=pair.path,
                message=hit.message,
                before=hit.before,
                after=hit.after,
                required_bump=rule.bump(pair.direction),
                file=pair.file,
            )


def compare(
    before: View,
    after: View,
    *,
    history: Sequence[View] = (),
    pair_by_name: bool = False,
    categories: frozenset[str] | None = None,
) -> list[Finding]:
    """Every finding between ``before`` and ``after``; ``history`` lists earlier snapshots.

    ``history`` should end with ``before`` itself (oldest first); it is added when missing.
    """
    if not history or history[-1] is not before:
        history = [*history, before]
    return list(_Walk(before, after, tuple(history), pair_by_name, categories).findings())


class _Walk:
    def __init__(
        self,
        before: View,
        after: View,
        history: tuple[View, ...],
        pair_by_name: bool,
        categories: frozenset[str] | None,
    ) -> None:
        self.b, self.a, self.history = before, after, history
        self.pair_by_name = pair_by_name
        self.categories = categories

    def common(self, path: str, direction: Direction, file: str) -> dict[str, Any]:
        return {
            "path": path,
            "direction": direction,
            "file": file,
            "before_view": self.b,
            "after_view": self.a,
        }

    def direction(self, key_before: str | None, key_after: str | None) -> Direction:
        def one(view: View, key: str | None) -> Direction | None:
            if key is None or (key not in view.messages and key not in view.enums):
                return None
            return view.direction(key)

        return _merge_directions(one(self.b, key_before), one(self.a, key_after))

    def file(self, key_before: str | None, key_after: str | None) -> str:
        return (self.a.file_of(key_after) if key_after else "") or (self.b.file_of(key_before) if key_before else "")

    def run(self, subject: Subject, pair: Pair) -> Iterator[Finding]:
        yield from _run(subject, pair, self.categories)

    def findings(self) -> Iterator[Finding]:
        yield from self.packages()
        yield from self.services()
        moved = self.moves(self.b.messages, self.a.messages)
        yield from self.messages(moved)
        yield from self.enums()
        yield from self.histories()

    # packages and services ----------------------------------------------------------------

    def packages(self) -> Iterator[Finding]:
        if self.a.qualified:
            for file, package in self.b.file_packages.items():
                if file in self.a.file_packages:
                    pair = PackagePair(
                        before=package, after=self.a.file_packages[file], **self.common(file, "both", file)
                    )
                    yield from self.run("package", pair)
        elif self.b.packages and self.a.packages:
            b, a = self.b.packages[0], self.a.packages[0]
            pair = PackagePair(before=b.package, after=a.package, **self.common(a.package, "both", a.proto_path))
            yield from self.run("package", pair)

    def services(self) -> Iterator[Finding]:
        for key in _union(self.b.services, self.a.services):
            bs, as_ = self.b.services.get(key), self.a.services.get(key)
            file = self.file(key, key)
            yield from self.run(
                "service", ServicePair(name=key, before=bs, after=as_, **self.common(key, "both", file))
            )
            if bs is None or as_ is None:
                continue
            bm = {m.name: m for m in bs.methods}
            am = {m.name: m for m in as_.methods}
            for name in _union(bm, am):
                pair = RpcPair(
                    service=key,
                    before=bm.get(name),
                    after=am.get(name),
                    **self.common(f"{key}.{name}", "both", file),
                )
                yield from self.run("rpc", pair)

    # messages and fields -----------------------------------------------------------------

    @staticmethod
    def moves(before: dict[str, Any], after: dict[str, Any]) -> dict[str, str]:
        """New key -> old key for things that vanished and reappeared under one short name."""
        gone = [k for k in before if k not in after]
        new = [k for k in after if k not in before]
        moved: dict[str, str] = {}
        for key in new:
            candidates = [g for g in gone if short_name(g) == short_name(key) and g not in moved.values()]
            if len(candidates) == 1:
                moved[key] = candidates[0]
        return moved

    def messages(self, moved: dict[str, str]) -> Iterator[Finding]:
        moved_old = set(moved.values())
        for key in _union(self.b.messages, self.a.messages):
            if key in moved_old:
                continue
            old_key = moved.get(key, key)
            bm, am = self.b.messages.get(old_key), self.a.messages.get(key)
            direction = self.direction(old_key, key)
            file = self.file(old_key, key)
            pair = MessagePair(
                name=key,
                before=None if key in moved else bm,
                after=am,
                moved_from=moved.get(key),
                **self.common(key, direction, file),
            )
            # A moved message is reported once, then compared field by field as itself.
            yield from self.run("message", pair)
            if bm is None or am is None:
                continue
            yield from self.fields(old_key, key, bm, am, direction, file)
            yield from self.run(
                "reserved",
                ReservedPair(
                    kind="message",
                    name=key,
                    before=bm,
                    after=am,
                    restored_numbers=frozenset(f.number for f in am.fields if self.restored(key, f.number, f.name, f)),
                    restored_names=frozenset(f.name for f in am.fields if self.restored(key, f.number, f.name, f)),
                    **self.common(key, direction, file),
                ),
            )

    def fields(
        self, old_key: str, key: str, bm: ir.Message, am: ir.Message, direction: Direction, file: str
    ) -> Iterator[Finding]:
        pairs: list[tuple[ir.Field | None, ir.Field | None]] = []
        left_b = {f.number: f for f in bm.fields}
        left_a = {f.number: f for f in am.fields}
        for number in list(left_b):
            if number in left_a:
                pairs.append((left_b.pop(number), left_a.pop(number)))
        if self.pair_by_name:
            by_name = {f.name: f for f in left_a.values()}
            for number, f in list(left_b.items()):
                if f.name in by_name:
                    other = by_name.pop(f.name)
                    pairs.append((left_b.pop(number), left_a.pop(other.number)))
        pairs += [(f, None) for f in left_b.values()]
        pairs += [(None, f) for f in left_a.values()]
        b_facts, a_facts = self.b.facts.get(old_key, {}), self.a.facts.get(key, {})
        for bf, af in pairs:
            name = (af or bf).name  # type: ignore[union-attr]
            pair = FieldPair(
                message=key,
                before=bf,
                after=af,
                before_message=bm,
                after_message=am,
                before_facts=b_facts.get(bf.number, {}) if bf else {},
                after_facts=a_facts.get(af.number, {}) if af else {},
                **self.common(f"{key}.{name}", direction, file),
            )
            yield from self.run("field", pair)

    # enums -------------------------------------------------------------------------------

    def enums(self) -> Iterator[Finding]:
        for key in _union(self.b.enums, self.a.enums):
            be, ae = self.b.enums.get(key), self.a.enums.get(key)
            direction = self.direction(key, key)
            file = self.file(key, key)
            yield from self.run("enum", EnumPair(name=key, before=be, after=ae, **self.common(key, direction, file)))
            if be is None or ae is None:
                continue
            bv = _values_by_number(be)
            av = _values_by_number(ae)
            for number in _union(bv, av):
                pair = EnumValuePair(
                    enum=key,
                    number=number,
                    before=bv.get(number, ()),
                    after=av.get(number, ()),
                    after_enum=ae,
                    **self.common(f"{key}.{(av.get(number) or bv[number])[0]}", direction, file),
                )
                yield from self.run("enum_value", pair)
            yield from self.run(
                "reserved",
                ReservedPair(
                    kind="enum",
                    name=key,
                    before=be,
                    after=ae,
                    restored_numbers=frozenset(
                        v.number for v in ae.values if self.restored(key, v.number, v.name, None)
                    ),
                    restored_names=frozenset(v.name for v in ae.values if self.restored(key, v.number, v.name, None)),
                    **self.common(key, direction, file),
                ),
            )

    # history -----------------------------------------------------------------------------

    def holders(self, key: str, number: int | None, name: str | None) -> Holder | None:
        """The newest earlier holder of ``number`` (or ``name``) in message or enum ``key``."""
        for view in reversed(self.history):
            scope: ir.Message | ir.Enum | None = view.messages.get(key) or view.enums.get(key)
            if scope is None:
                continue
            if isinstance(scope, ir.Message):
                f = scope.field_by_number(number) if number is not None else scope.field_by_name(name or "")
                if f is not None:
                    return Holder(view.label, f.name, f.number, f)
            else:
                v = scope.value_by_number(number) if number is not None else scope.value_by_name(name or "")
                if v is not None:
                    return Holder(view.label, v.name, v.number, None)
        return None

    def reserved_in(self, key: str, number: int | None, name: str | None) -> str | None:
        for view in reversed(self.history):
            scope: ir.Message | ir.Enum | None = view.messages.get(key) or view.enums.get(key)
            if scope is None:
                continue
            if number is not None and in_ranges(number, scope.reserved_numbers):
                return view.label
            if name is not None and name in scope.reserved_names:
                return view.label
        return None

    def restored(self, key: str, number: int, name: str, f: ir.Field | None) -> bool:
        """Whether ``number``/``name`` comes back as the very field (or value) that had it."""
        h = self.holders(key, number, None)
        if h is None or h.name != name:
            return False
        if f is None or h.field is None:
            return True
        return h.field.cardinality == f.cardinality and type_change(h.field, f, self.b, self.a) != "incompatible"

    def histories(self) -> Iterator[Finding]:
        for key, message in self.a.messages.items():
            base = self.b.messages.get(key)
            direction = self.direction(key, key)
            file = self.file(key, key)
            for f in message.fields:
                skip_number = base is not None and base.field_by_number(f.number) is not None
                skip_name = base is not None and base.field_by_name(f.name) is not None
                pair = HistoryPair(
                    kind="message",
                    scope=key,
                    name=f.name,
                    number=f.number,
                    after=f,
                    number_holder=None if skip_number else self.holders(key, f.number, None),
                    name_holder=None if skip_name else self.holders(key, None, f.name),
                    number_reserved=None if skip_number else self.reserved_in(key, f.number, None),
                    name_reserved=None if skip_name else self.reserved_in(key, None, f.name),
                    **self.common(f"{key}.{f.name}", direction, file),
                )
                yield from self.run("history", pair)
        for key, enum in self.a.enums.items():
            base_enum = self.b.enums.get(key)
            direction = self.direction(key, key)
            file = self.file(key, key)
            for v in enum.values:
                skip_number = base_enum is not None and base_enum.value_by_number(v.number) is not None
                skip_name = base_enum is not None and base_enum.value_by_name(v.name) is not None
                pair = HistoryPair(
                    kind="enum",
                    scope=key,
                    name=v.name,
                    number=v.number,
                    after=None,
                    number_holder=None if skip_number else self.holders(key, v.number, None),
                    name_holder=None if skip_name else self.holders(key, None, v.name),
                    number_reserved=None if skip_number else self.reserved_in(key, v.number, None),
                    name_reserved=None if skip_name else self.reserved_in(key, None, v.name),
                    **self.common(f"{key}.{v.name}", direction, file),
                )
                yield from self.run("history", pair)


def _union(a: dict[Any, Any], b: dict[Any, Any]) -> list[Any]:
    return [*a, *(k for k in b if k not in a)]


def _values_by_number(enum: ir.Enum) -> dict[int, tuple[str, ...]]:
    out: dict[int, tuple[str, ...]] = {}
    for v in enum.values:
        out[v.number] = (*out.get(v.number, ()), v.name)
    return out


def _with_levels(findings: Sequence[Finding], declared: Bump) -> tuple[Finding, ...]:
    out = []
    for f in findings:
        rule = RULES_BY_ID[f.rule]
        level: Level
        if bump_rank(f.required_bump) > bump_rank(declared) or f.rule == "VERSION_WENT_BACKWARDS":
            level = "error"
        elif rule.warns(f.direction):
            level = "warning"
        else:
            level = "info"
        out.append(
            Finding(
                f.rule,
                f.category,
                f.direction,
                f.path,
                f.message,
                f.before,
                f.after,
                f.required_bump,
                level,
                f.file,
            )
        )
    return tuple(out)


def _prefix(findings: Sequence[Finding], prefix: str) -> list[Finding]:
    if not prefix:
        return list(findings)
    return [
        Finding(
            f.rule,
            f.category,
            f.direction,
            f.path,
            f.message,
            f.before,
            f.after,
            f.required_bump,
            f.level,
            f"{prefix.rstrip('/')}/{f.file}" if f.file else f.file,
        )
        for f in findings
    ]


# -- verdicts ------------------------------------------------------------------------------


def check_release(
    model: str,
    releases: Sequence[Any],
    package: ir.Package,
    version: str,
    fingerprint: str | None = None,
    *,
    against: str | None = None,
    file_prefix: str = "",
) -> Report:
    """Check the release ``version`` of ``model`` (numbered as ``package``) against the registry.

    ``releases`` are the model's :class:`~registry.store.ReleaseInfo`\\s, oldest first. The
    baseline is ``against`` or the newest release; every other release is history. A release
    already registered under ``version`` is left out of the history (it is what is re-checked).
    """
    declared = parse_version(version)
    if not releases:
        return Report(
            model,
            version,
            None,
            "major",
            "none",
            True,
            (),
            note=f"{model} {version}: first release, nothing to compare",
        )
    newest = max(releases, key=lambda r: r.parsed_version)
    if against is not None:
        baseline = next((r for r in releases if r.version == against), None)
        if baseline is None:
            known = ", ".join(r.version for r in releases)
            raise NotFoundError(f'Model "{model}" has no release "{against}" to check against (releases: {known})')
    else:
        baseline = newest
    base_version = baseline.parsed_version
    if declared == base_version and fingerprint is not None and fingerprint == baseline.fingerprint:
        return Report(
            model,
            version,
            baseline.version,
            "none",
            "none",
            True,
            (),
            note=f"{model} {version}: already registered with this schema",
        )
    history = [
        build_view([r.package], qualified=False, label=r.version)
        for r in releases
        if r.version != version and r is not baseline
    ]
    before = build_view([baseline.package], qualified=False, label=baseline.version)
    after = build_view([package], qualified=False, label=version)
    findings = compare(before, after, history=[*history, before], pair_by_name=True)
    release = ReleasePair(
        model=model,
        before=baseline.version,
        newest=newest.version,
        after=version,
        schema_changed=fingerprint is None or fingerprint != baseline.fingerprint,
        path=model,
        direction="both",
        file=package.proto_path,
        before_view=before,
        after_view=after,
    )
    findings += list(_run("release", release, None))
    backwards = declared < newest.parsed_version
    bump = declared_bump(base_version, declared) if declared >= base_version else "none"
    required = max_bump([f.required_bump for f in findings])
    passed = not backwards and bump_rank(bump) >= bump_rank(required)
    return Report(
        model,
        version,
        baseline.version,
        bump,
        required,
        passed,
        _with_levels(_prefix(findings, file_prefix), bump),
        went_backwards=backwards,
    )


def check_trees(
    before: Sequence[ir.Package],
    after: Sequence[ir.Package],
    *,
    history: Sequence[Sequence[ir.Package]] = (),
    categories: Sequence[str] | None = None,
    before_label: str = "before",
    after_label: str = "after",
    history_labels: Sequence[str] = (),
    file_prefix: str = "",
) -> Report:
    """``protoreg breaking``: compare two trees of packages read from descriptors.

    There is no declared version, so the verdict asks for compatibility: a finding that needs a
    major bump fails it. ``history`` are older trees, oldest first, for the transitive rules.
    """
    selected = None
    if categories:
        selected = frozenset(c for name in categories for c in CATEGORY_SCOPES[name])
    labels = list(history_labels) or [f"history {i + 1}" for i in range(len(history))]
    history_views = [build_view(p, qualified=True, label=label) for p, label in zip(history, labels, strict=True)]
    bview = build_view(before, qualified=True, label=before_label)
    aview = build_view(after, qualified=True, label=after_label)
    findings = compare(bview, aview, history=[*history_views, bview], categories=selected)
    required = max_bump([f.required_bump for f in findings])
    passed = bump_rank(required) < bump_rank("major")
    return Report(
        after_label,
        None,
        before_label,
        "minor",
        required,
        passed,
        _with_levels(_prefix(findings, file_prefix), "minor"),
    )
