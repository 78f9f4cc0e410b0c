"""Image tags read as versions, and Masterminds-compatible version ranges.

python-semver parses and orders versions but has no range grammar, and Flux/Argo users already
write ranges in Masterminds/semver v3 syntax (``^1.2``, ``>=1.0 <2.0``, ``1.x``, ``1.2 - 1.4``).
This module gives them the same meaning here, over ``semver.Version`` ordering.

Tag parsing is deliberately a little more lenient than Flux (which needs all three numbers):
``v1.2.3``, ``1.2`` and ``1`` are versions, so projects that publish ``1.2``-style tags can be
followed. Everything else that merely contains digits is not a version:

* ``latest``, ``stable``, git SHAs (``3f2a1b0``): letters, not a version;
* ``1.2.3.4``: four numbers is a build number, not SemVer;
* ``01.2.3``, ``1.02``: leading zeros are invalid SemVer;
* ``2024-01-01``, ``1.2-rc.1``: a pre-release or build suffix needs all three numbers. Without that
  rule a date would read as version ``2024.0.0`` with pre-release ``01-01``;
* anything with surrounding whitespace, more than one leading ``v``, or non-ASCII digits.

A bare number such as ``20240101`` *is* a version (``20240101.0.0``), as in Masterminds.

Pure module: stdlib and ``semver`` only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from semver import Version

__all__ = ["InvalidRange", "Range", "TagVersion", "parse_tag", "parse_version"]

_NUM = r"(?:0|[1-9][0-9]*)"
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_BUILD_ID = r"[0-9A-Za-z-]+"
_TAG_VERSION_RE = re.compile(
    rf"(?P<prefix>[vV]?)(?P<major>{_NUM})"
    rf"(?:\.(?P<minor>{_NUM})"
    rf"(?:\.(?P<patch>{_NUM})"
    rf"(?:-(?P<pre>{_PRE_ID}(?:\.{_PRE_ID})*))?"
    rf"(?:\+(?P<build>{_BUILD_ID}(?:\.{_BUILD_ID})*))?"
    r")?)?"
)


@dataclass(frozen=True, slots=True)
class TagVersion:
    """A tag that reads as a version, with the spelling details needed to pick between equals.

    ``precision`` is how many numbers the tag spells (``1.2`` → 2): a ``1.2`` tag usually floats
    over patch releases, so callers compare it only with tags of the same precision.
    """

    tag: str
    version: Version
    precision: int
    prefixed: bool


def parse_tag(tag: str) -> TagVersion | None:
    """Read ``tag`` as a version (see the module docstring for what counts); None otherwise."""
    match = _TAG_VERSION_RE.fullmatch(tag)
    if match is None:
        return None
    minor, patch = match["minor"], match["patch"]
    version = Version(
        int(match["major"]),
        int(minor) if minor is not None else 0,
        int(patch) if patch is not None else 0,
        match["pre"],
        match["build"],
    )
    precision = 3 if patch is not None else 2 if minor is not None else 1
    return TagVersion(tag=tag, version=version, precision=precision, prefixed=bool(match["prefix"]))


def parse_version(tag: str) -> Version | None:
    """The version a tag names, or None when the tag is not a version (``latest``, dates, ...)."""
    parsed = parse_tag(tag)
    return parsed.version if parsed is not None else None


# --------------------------------------------------------------------------------------------
# Ranges
# --------------------------------------------------------------------------------------------


class InvalidRange(ValueError):
    """A range Masterminds would reject (or that we refuse on purpose); names the input."""

    def __init__(self, text: str, problem: str) -> None:
        super().__init__(f"invalid version range {text!r}: {problem}")
        self.text = text
        self.problem = problem


_PART = r"[0-9]+|[xX*]"
_CV = (
    rf"[vV]?(?P<{{n}}1>{_PART})(?:\.(?P<{{n}}2>{_PART}))?(?:\.(?P<{{n}}3>{_PART}))?"
    r"(?:-(?P<{n}pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)
_COMPARATOR_RE = re.compile(r"(?P<op>!=|>=|=>|<=|=<|~>|>|<|=|~|\^)?\s*" + _CV.format(n="a"))
_HYPHEN_RE = re.compile(r"\s+-\s+" + _CV.format(n="b"))
_WHITESPACE_RE = re.compile(r"\s*")


def _skip_whitespace(text: str, pos: int) -> int:
    match = _WHITESPACE_RE.match(text, pos)
    return match.end() if match is not None else pos


_OPERATOR_ALIASES = {"": "=", "=>": ">=", "=<": "<=", "~>": "~"}


@dataclass(frozen=True, slots=True)
class _Comparator:
    """One comparator as an interval (optionally negated) plus its own pre-release flag.

    Implicit upper bounds are ``X-0`` (the lowest pre-release of X), so ``^1.2.3-beta`` stops
    before ``2.0.0-rc.1`` exactly like Masterminds' "same major" test.
    """

    lower: Version | None
    lower_inclusive: bool
    upper: Version | None
    upper_inclusive: bool
    negated: bool
    prerelease: bool

    def admits(self, version: Version, include_prerelease: bool) -> bool:
        # Masterminds: a pre-release only satisfies comparators that name a pre-release.
        if version.prerelease and not self.prerelease and not include_prerelease:
            return False
        inside = True
        if self.lower is not None:
            inside = version >= self.lower if self.lower_inclusive else version > self.lower
        if inside and self.upper is not None:
            inside = version <= self.upper if self.upper_inclusive else version < self.upper
        return inside != self.negated


@dataclass(frozen=True, slots=True)
class Range:
    """A Masterminds/semver v3 constraint: ``||`` alternatives of AND-ed comparators.

    Deliberate differences from Masterminds, all in corners nobody should rely on: leading zeros
    are rejected (as in tags); ``V`` is accepted like ``v``; ``^*`` and ``<=*`` mean "any version"
    and ``!=*`` means "no version" (Masterminds reads the ``*`` there as ``0.0.0``, an oddity).
    """

    text: str
    alternatives: tuple[tuple[_Comparator, ...], ...]

    @classmethod
    def parse(cls, text: str) -> Range:
        """Parse a range; raise InvalidRange with the offending text on any syntax error."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidRange(str(text), "empty range")
        alternatives = tuple(_parse_conjunction(text, part) for part in text.split("||"))
        return cls(text=text, alternatives=alternatives)

    def contains(self, version: Version, *, include_prerelease: bool = False) -> bool:
        """True if ``version`` satisfies any alternative.

        ``include_prerelease`` switches off the per-comparator pre-release rule (npm's
        ``includePrerelease``), for users who opted into pre-releases with an annotation.
        """
        return any(
            all(c.admits(version, include_prerelease) for c in conjunction)
            for conjunction in self.alternatives
        )

    @property
    def names_prerelease(self) -> bool:
        """True if some comparator names a pre-release (``>=1.0.0-0``): the range opts in."""
        return any(c.prerelease for conjunction in self.alternatives for c in conjunction)

    def __str__(self) -> str:
        return self.text


def _parse_conjunction(text: str, part: str) -> tuple[_Comparator, ...]:
    """Parse one ``||`` alternative: comparators separated by commas and/or whitespace."""
    if not part.strip():
        raise InvalidRange(text, "empty alternative around '||'")
    comparators: list[_Comparator] = []
    pos = _skip_whitespace(part, 0)
    while True:
        match = _COMPARATOR_RE.match(part, pos)
        if match is None:
            raise InvalidRange(text, f"cannot parse {part[pos:]!r}")
        pos = match.end()
        hyphen = _HYPHEN_RE.match(part, pos)
        if hyphen is not None:
            if match["op"]:
                raise InvalidRange(text, "a hyphen range cannot have an operator")
            comparators.append(_comparator(text, ">=", match, "a"))
            comparators.append(_comparator(text, "<=", hyphen, "b"))
            pos = hyphen.end()
        else:
            op = _OPERATOR_ALIASES.get(match["op"] or "", match["op"])
            comparators.append(_comparator(text, op, match, "a"))

        spaced = _skip_whitespace(part, pos)
        if spaced == len(part):
            return tuple(comparators)
        if part[spaced] == ",":
            pos = _skip_whitespace(part, spaced + 1)
            if pos == len(part):
                raise InvalidRange(text, "trailing comma")
        elif spaced > pos:
            pos = spaced
        else:
            raise InvalidRange(text, f"unexpected {part[pos:]!r} after {match.group(0).strip()!r}")


def _comparator(text: str, op: str, match: re.Match[str], group: str) -> _Comparator:
    """Turn one ``op version`` into an interval following Masterminds' semantics."""
    numbers: list[int] = []
    for index in (1, 2, 3):
        raw = match[f"{group}{index}"]
        if raw is None or raw in "xX*":
            break  # everything after the first wildcard is a wildcard too, as in Masterminds
        if len(raw) > 1 and raw.startswith("0"):
            raise InvalidRange(text, f"leading zero in {raw!r}")
        numbers.append(int(raw))
    pre = match[f"{group}pre"]
    if pre is not None:
        for identifier in pre.split("."):
            if identifier.isdigit() and len(identifier) > 1 and identifier.startswith("0"):
                raise InvalidRange(text, f"leading zero in pre-release {pre!r}")

    k = len(numbers)
    major, minor, patch = (numbers + [0, 0, 0])[:3]
    base = Version(major, minor, patch, pre)

    def bump(level: int) -> Version:
        if level == 1:
            return Version(major + 1, 0, 0, "0")
        if level == 2:
            return Version(major, minor + 1, 0, "0")
        return Version(major, minor, patch + 1, "0")

    def interval(
        lower: Version | None,
        upper: Version | None,
        *,
        lower_inclusive: bool = True,
        upper_inclusive: bool = False,
        negated: bool = False,
    ) -> _Comparator:
        return _Comparator(lower, lower_inclusive, upper, upper_inclusive, negated, pre is not None)

    if op in ("=", "!="):
        negated = op == "!="
        if k == 0:
            return interval(None, None, negated=negated)
        if k == 3:
            return interval(base, base, upper_inclusive=True, negated=negated)
        return interval(base, bump(k), negated=negated)
    if op == ">":
        if k in (1, 2):
            return interval(bump(k), None)
        return interval(base, None, lower_inclusive=False)
    if op == ">=":
        return interval(base, None)
    if op == "<":
        if k in (1, 2) and pre is None:
            # "<2.0" is "before the 2.0 series": only visible with include_prerelease, which
            # Masterminds lacks, and it keeps 2.0.0-rc.1 out as users expect.
            return interval(None, Version(major, minor, patch, "0"))
        return interval(None, base)
    if op == "<=":
        if k == 0:
            return interval(None, None)
        if k == 3:
            return interval(None, base, upper_inclusive=True)
        return interval(None, bump(k))
    if op == "~":
        if k == 0 or (k == 3 and (major, minor, patch) == (0, 0, 0)):
            return interval(base if k else None, None)  # Masterminds: ~0.0.0 means >=0.0.0
        return interval(base, bump(1 if k == 1 else 2))
    # op == "^"
    if k == 0:
        return interval(None, None)
    if major > 0 or k == 1:
        return interval(base, bump(1))
    if minor > 0 or k == 2:
        return interval(base, bump(2))
    return interval(base, bump(3))
