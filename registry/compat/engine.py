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

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from functools import cache
from typing import Any, Literal, TypedDict, TypeVar

from .. import ir
from ..errors import NotFoundError
from ..lineage import Lineage
from ..versioning import Bump, bump_rank, declared_bump, parse_version
from .findings import Category, Direction, Finding, Report, max_bump
from .pairs import (
    EnumPair,
    EnumValuePair,
    FieldPair,
    HistoryPair,
    Hit,
    Holder,
    MessagePair,
    PackagePair,
    Pair,
    ReleasePair,
    ReservedPair,
    RpcPair,
    ServicePair,
    Subject,
)
from .rules import HANDLERS, RULES_BY_ID, Rule, rules_for
from .sources import Release
from .view import View, build_view, short_name, type_change

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


K = TypeVar("K")
Renames = Mapping[tuple[str, str], frozenset[str]]
"""(message, field) -> the names the model declares the field was renamed from."""
_Active = tuple[tuple[Rule, Callable[[Pair], Iterator[Hit]]], ...]


class _Where(TypedDict):
    """What every pair carries besides its subject (see ``pairs.Pair``)."""

    path: str
    direction: Direction
    file: str
    before_view: View
    after_view: View


@cache
def _active(subject: Subject, categories: frozenset[str] | None) -> _Active:
    """The (rule, handler) pairs that run on ``subject`` for ``categories``, in declaration order."""
    return tuple(
        (rule, HANDLERS[rule.id])
        for rule in rules_for(subject)
        if categories is None or rule.category in categories
    )


def _run(subject: Subject, pair: Pair, categories: frozenset[str] | None) -> Iterator[Finding]:
    for rule, handle in _active(subject, categories):
        for hit in handle(pair):
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
                # The new tree's line (of the element, or of what holds it when it is gone): the
                # old tree's lines would point into a file the change no longer has.
                line=pair.after_view.line_of(pair.path) if pair.file in pair.after_view.file_packages else None,
            )


def compare(
    before: View,
    after: View,
    *,
    history: Sequence[View] = (),
    lineage: Lineage | None = None,
    pair_by_name: bool = False,
    categories: frozenset[str] | None = None,
    renames: Renames | None = None,
) -> list[Finding]:
    """Every finding between ``before`` and ``after``; ``history`` lists earlier snapshots.

    ``history`` should end with ``before`` itself (oldest first); it is added when missing.
    ``lineage``, when given, replaces ``history``: the summary of every earlier snapshot, the
    baseline folded in last (see :mod:`protoreg.registry.lineage`).
    """
    if lineage is None:
        if not history or history[-1] is not before:
            history = [*history, before]
        lineage = lineage_of_views(history)
    return list(_Walk(before, after, lineage, pair_by_name, categories, renames or {}).findings())


def lineage_of_views(views: Sequence[View]) -> Lineage:
    """The lineage of checker views, oldest first."""
    lineage = Lineage()
    for view in views:
        lineage.fold(view.label, view.messages, view.enums)
    return lineage


class _Walk:
    def __init__(
        self,
        before: View,
        after: View,
        lineage: Lineage,
        pair_by_name: bool,
        categories: frozenset[str] | None,
        renames: Renames,
    ) -> None:
        self.b, self.a, self.lineage = before, after, lineage
        self.pair_by_name = pair_by_name
        self.categories = categories
        self.renames = renames

    def common(self, path: str, direction: Direction, file: str) -> _Where:
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

    def active(self, subject: Subject) -> bool:
        """Whether any selected rule looks at ``subject`` (no pairs are built for it otherwise)."""
        return bool(_active(subject, self.categories))

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
    def moves(before: Mapping[str, object], after: Mapping[str, object]) -> dict[str, str]:
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
                before_features=self.b.features.get(old_key, {}),
                after_features=self.a.features.get(key, {}),
                **self.common(key, direction, file),
            )
            # A moved message is reported once, then compared field by field as itself.
            yield from self.run("message", pair)
            if bm is None or am is None:
                continue
            yield from self.fields(old_key, key, bm, am, direction, file)
            if self.active("reserved"):
                restored = [(f.number, f.name) for f in am.fields if self.restored(key, f.number, f.name, f)]
                yield from self.reservations("message", key, bm, am, restored, direction, file)

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
        no_facts: dict[int, ir.FieldFacts] = {}
        b_facts, a_facts = self.b.facts.get(old_key, no_facts), self.a.facts.get(key, no_facts)
        for bf, af in pairs:
            name = (af or bf).name  # type: ignore[union-attr]
            pair = FieldPair(
                message=key,
                before=bf,
                after=af,
                before_message=bm,
                after_message=am,
                before_facts=b_facts.get(bf.number, ir.NO_FACTS) if bf else ir.NO_FACTS,
                after_facts=a_facts.get(af.number, ir.NO_FACTS) if af else ir.NO_FACTS,
                **self.common(f"{key}.{name}", direction, file),
            )
            yield from self.run("field", pair)

    # enums -------------------------------------------------------------------------------

    def enums(self) -> Iterator[Finding]:
        for key in _union(self.b.enums, self.a.enums):
            be, ae = self.b.enums.get(key), self.a.enums.get(key)
            direction = self.direction(key, key)
            file = self.file(key, key)
            enum_pair = EnumPair(
                name=key,
                before=be,
                after=ae,
                before_features=self.b.features.get(key, {}),
                after_features=self.a.features.get(key, {}),
                **self.common(key, direction, file),
            )
            yield from self.run("enum", enum_pair)
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
            if self.active("reserved"):
                restored = [(v.number, v.name) for v in ae.values if self.restored(key, v.number, v.name, None)]
                yield from self.reservations("enum", key, be, ae, restored, direction, file)

    def reservations(
        self, kind: Literal["message", "enum"], key: str, before: ir.Message | ir.Enum, after: ir.Message | ir.Enum,
        restored: list[tuple[int, str]], direction: Direction, file: str,
    ) -> Iterator[Finding]:
        """The reserved-range pair of one message or enum; ``restored`` came back from history."""
        yield from self.run(
            "reserved",
            ReservedPair(
                kind=kind,
                name=key,
                before=before,
                after=after,
                restored_numbers=frozenset(number for number, _ in restored),
                restored_names=frozenset(name for _, name in restored),
                **self.common(key, direction, file),
            ),
        )

    # history -----------------------------------------------------------------------------

    def holders(self, key: str, number: int | None, name: str | None) -> Holder | None:
        """The newest earlier holder of ``number`` (or ``name``) in message or enum ``key``."""
        h = self.lineage.holder(key, number, name)
        return None if h is None else Holder(h.label, h.name, h.number, h.field)

    def reserved_in(self, key: str, number: int | None, name: str | None) -> str | None:
        """The newest earlier snapshot that reserved ``number`` (or ``name``) in ``key``."""
        return self.lineage.reserved(key, number, name)

    def restored(self, key: str, number: int, name: str, f: ir.Field | None) -> bool:
        """Whether ``number``/``name`` comes back as the very field (or value) that had it."""
        h = self.holders(key, number, None)
        if h is None or h.name != name:
            return False
        if f is None or h.field is None:
            return True
        return h.field.cardinality == f.cardinality and type_change(h.field, f, self.b, self.a) != "incompatible"

    def histories(self) -> Iterator[Finding]:
        if not self.active("history"):
            return
        for key, message in self.a.messages.items():
            base = self.b.messages.get(key)
            items = [(f.name, f.number, f) for f in message.fields]
            old = [(f.name, f.number) for f in base.fields] if base is not None else []
            yield from self._history_pairs("message", key, items, old)
        for key, enum in self.a.enums.items():
            base_enum = self.b.enums.get(key)
            values = [(v.name, v.number, None) for v in enum.values]
            old = [(v.name, v.number) for v in base_enum.values] if base_enum is not None else []
            yield from self._history_pairs("enum", key, values, old)

    def _history_pairs(
        self, kind: Literal["message", "enum"], key: str, items: Sequence[tuple[str, int, ir.Field | None]],
        base: list[tuple[str, int]],
    ) -> Iterator[Finding]:
        """One HistoryPair per field or enum value; what the baseline already had is not history."""
        base_names = {name for name, _ in base}
        base_numbers = {number for _, number in base}
        direction = self.direction(key, key)
        file = self.file(key, key)
        for name, number, after in items:
            skip_number = number in base_numbers
            skip_name = name in base_names
            pair = HistoryPair(
                kind=kind,
                scope=key,
                name=name,
                number=number,
                after=after,
                number_holder=None if skip_number else self.holders(key, number, None),
                name_holder=None if skip_name else self.holders(key, None, name),
                number_reserved=None if skip_number else self.reserved_in(key, number, None),
                name_reserved=None if skip_name else self.reserved_in(key, None, name),
                renamed_from=self.renames.get((key, name), frozenset()),
                **self.common(f"{key}.{name}", direction, file),
            )
            yield from self.run("history", pair)


def _union(a: Mapping[K, object], b: Mapping[K, object]) -> list[K]:
    return [*a, *(k for k in b if k not in a)]


def _values_by_number(enum: ir.Enum) -> dict[int, tuple[str, ...]]:
    out: dict[int, tuple[str, ...]] = {}
    for v in enum.values:
        out[v.number] = (*out.get(v.number, ()), v.name)
    return out


def _with_levels(findings: Sequence[Finding], declared: Bump) -> tuple[Finding, ...]:
    return tuple(
        replace(f, level=RULES_BY_ID[f.rule].level_of(f.direction, f.required_bump, declared)) for f in findings
    )


def _prefix(findings: Sequence[Finding], prefix: str) -> list[Finding]:
    if not prefix:
        return list(findings)
    return [replace(f, file=f"{prefix.rstrip('/')}/{f.file}") if f.file else f for f in findings]


# -- verdicts ------------------------------------------------------------------------------


def check_release(
    model: str,
    releases: Sequence[Release],
    package: ir.Package,
    version: str,
    fingerprint: str | None = None,
    *,
    against: str | None = None,
    file_prefix: str = "",
    renames: Renames | None = None,
) -> Report:
    """Check the release ``version`` of ``model`` (numbered as ``package``) against the registry.

    ``releases`` are the model's :class:`~protoreg.registry.store.ReleaseInfo`\\s, oldest first. The
    baseline is ``against`` or the newest release; every other release is history. A release
    already registered under ``version`` is left out of the history (it is what is re-checked).
    """
    if not releases:
        return _first_release(model, version)
    newest = max(releases, key=lambda r: r.parsed_version)
    if against is not None:
        baseline = next((r for r in releases if r.version == against), None)
        if baseline is None:
            known = ", ".join(r.version for r in releases)
            raise NotFoundError(f'Model "{model}" has no release "{against}" to check against (releases: {known})')
    else:
        baseline = newest
    unchanged = _unchanged(model, baseline, version, fingerprint)
    if unchanged is not None:
        return unchanged
    history = [
        build_view([r.package], qualified=False, label=r.version)
        for r in releases
        if r.version != version and r is not baseline
    ]
    before = build_view([baseline.package], qualified=False, label=baseline.version)
    lineage = lineage_of_views([*history, before])
    return _verdict(model, baseline, newest, before, lineage, package, version, fingerprint, file_prefix, renames)


def diff_releases(releases: Sequence[Release], first: Release, second: Release, *, file_prefix: str = "") -> Report:
    """``protoreg diff``: the findings between two registered releases, ``second`` checked against ``first``.

    ``releases`` are every release of the model, oldest first (registration order). The history
    is what was registered before ``second``, plus ``first`` when it came later, so a pair is
    judged the way ``register`` judged ``second``, with ``first`` as its baseline.
    """
    index = next(i for i, r in enumerate(releases) if r.version == second.version)
    history = [r for i, r in enumerate(releases) if (i < index or r.version == first.version)
               and r.version != second.version]
    return check_release(
        second.model,
        history,
        second.package,
        second.version,
        second.fingerprint,
        against=first.version,
        file_prefix=file_prefix,
        renames=renames_of(getattr(second, "schema", None) or {}),
    )


def renames_of(schema: Mapping[str, Any]) -> Renames:
    """The ``renamed_from`` declarations of a schema tree (``ModelSchema.to_dict()``, or a release's
    stored schema): a renamed field keeps its number, which is no reuse."""
    out: dict[tuple[str, str], frozenset[str]] = {}
    for message in schema.get("messages", ()):
        for f in message.get("fields", ()):
            if f.get("renamed_from"):
                out[(message["name"], f["name"])] = frozenset(f["renamed_from"])
    return out


def check_against_newest(
    model: str,
    newest: Release | None,
    lineage: Lineage,
    package: ir.Package,
    version: str,
    fingerprint: str | None = None,
    *,
    file_prefix: str = "",
    renames: Renames | None = None,
) -> Report:
    """:func:`check_release` against the newest release, with the history as a lineage.

    ``newest`` is the release :func:`check_release` would take as baseline (the highest version,
    the first registered among equals) and ``lineage`` summarises every release of the model,
    oldest first, ``newest`` folded in last. The caller makes sure no release other than
    ``newest`` carries ``version``. The cost depends on the size of the model, not on how many
    releases it has.
    """
    if newest is None:
        return _first_release(model, version)
    unchanged = _unchanged(model, newest, version, fingerprint)
    if unchanged is not None:
        return unchanged
    before = build_view([newest.package], qualified=False, label=newest.version)
    return _verdict(model, newest, newest, before, lineage, package, version, fingerprint, file_prefix, renames)


def _first_release(model: str, version: str) -> Report:
    parse_version(version)
    # The summary says "first release, nothing to compare"; the note is left to the caller, who
    # knows which registry it asked (``check`` names it: see ``crosscheck.new_model_note``).
    return Report(model, version, None, "major", "none", True, ())


def _unchanged(model: str, baseline: Release, version: str, fingerprint: str | None) -> Report | None:
    declared = parse_version(version)
    if declared == baseline.parsed_version and fingerprint is not None and fingerprint == baseline.fingerprint:
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
    return None


def _verdict(
    model: str,
    baseline: Release,
    newest: Release,
    before: View,
    lineage: Lineage,
    package: ir.Package,
    version: str,
    fingerprint: str | None,
    file_prefix: str,
    renames: Renames | None = None,
) -> Report:
    declared = parse_version(version)
    base_version = baseline.parsed_version
    after = build_view([package], qualified=False, label=version)
    findings = compare(before, after, lineage=lineage, pair_by_name=True, renames=renames)
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
