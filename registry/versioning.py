"""Semantic versions: parsing with a clear error, ordering, and the bump between two versions."""

from __future__ import annotations

from typing import Literal

import semver

from .errors import VersionError

Version = semver.Version
Bump = Literal["none", "patch", "minor", "major"]
BUMP_ORDER: tuple[Bump, ...] = ("none", "patch", "minor", "major")


def parse_version(text: str) -> Version:
    try:
        return Version.parse(text)
    except (ValueError, TypeError) as error:
        raise VersionError(
            f'"{text}" is not a semantic version; use MAJOR.MINOR.PATCH such as "1.4.2"'
        ) from error


def bump_rank(bump: Bump) -> int:
    return BUMP_ORDER.index(bump)


def declared_bump(before: Version, after: Version) -> Bump:
    """The bump ``after`` declares over ``before``, as Cargo reads it for 0.x versions.

    Below 1.0.0 a minor bump may carry breaking changes, so ``0.3.0 -> 0.4.0`` declares a
    major-sized bump and ``0.3.0 -> 0.3.1`` a minor-sized one.
    """
    if after.major != before.major:
        return "major"
    if after.major == 0:
        if after.minor != before.minor:
            return "major"
        return "minor" if after.patch != before.patch or after.prerelease != before.prerelease else "none"
    if after.minor != before.minor:
        return "minor"
    if after.patch != before.patch or after.prerelease != before.prerelease:
        return "patch"
    return "none"
