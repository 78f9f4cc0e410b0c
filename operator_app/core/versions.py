"""Image tags read as versions, and version ranges that mean what they mean in Flux and Helm.

python-semver parses and orders versions but has no range grammar, and Flux/Argo/Helm users
already write ranges in Masterminds/semver v3 syntax (``^1.2``, ``>=1.0 <2.0``, ``1.x``,
``1.2 - 1.4``). ``Range`` is a port of Masterminds/semver **v3.5.0** ``NewConstraint`` and
``Constraints.Check`` (constraints.go), including its pre-release rule since 3.4: a pre-release
satisfies an AND group (one ``||`` alternative) only if some comparator of that group names a
pre-release (``>=1.0.0-0 <2.0.0`` admits ``1.5.0-rc.1``), or if the caller opts in with
``include_prerelease`` (Masterminds' ``Constraints.IncludePrerelease``).
``tests/unit/test_versions_masterminds.py`` checks the port against the Go library itself;
docs/engine.md lists the few deliberate differences.

Tag parsing is deliberately a little more lenient than Flux (which needs all three numbers):
``v1.2.3``, ``1.2`` and ``1`` are versions, so projects that publish ``1.2``-style tags can be
followed. Everything else that merely contains digits is not a version:

* ``latest``, ``stable``, git SHAs (``3f2a1b0``): letters, not a version;
* ``1.2.3.4``: four numbers is a build number, not SemVer;
* ``01.2.3``, ``1.02``: leading zeros are invalid SemVer (Masterminds would read ``1.2.3``);
* ``2024-01-01``, ``1.2-rc.1``: a pre-release or build suffix needs all three numbers. Without that
  rule a date would read as version ``2024.0.0`` with pre-release ``01-01``;
* numbers that do not fit in 64 bits (Masterminds' ``uint64``), including numeric pre-release
  identifiers, and tags longer than 256 bytes (Masterminds' ``MaxVersionLen``);
* anything with surrounding whitespace, more than one leading ``v``, or non-ASCII digits.

A bare number such as ``20240101`` *is* a version (``20240101.0.0``), as in Masterminds.

Pure module: stdlib and ``semver`` only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from semver import Version

__all__ = [
    "MAX_NUMBER",
    "MAX_RANGE_GROUPS",
    "MAX_RANGE_LENGTH",
    "MAX_VERSION_LENGTH",
    "InvalidRange",
    "Range",
    "TagVersion",
    "compare",
    "parse_tag",
    "parse_version",
]

MAX_NUMBER = 2**64 - 1  # Masterminds keeps major/minor/patch in uint64
MAX_VERSION_LENGTH = 256  # semver.MaxVersionLen, in bytes
MAX_RANGE_LENGTH = 512  # semver.MaxConstraintLen, in bytes
MAX_RANGE_GROUPS = 32  # semver.MaxConstraintGroups: at most 31 "||"

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
    if match is None or len(tag) > MAX_VERSION_LENGTH:  # ASCII once matched: chars == bytes
        return None
    minor, patch, pre = match["minor"], match["patch"], match["pre"]
    numbers = (int(match["major"]), int(minor or 0), int(patch or 0))
    if max(numbers) > MAX_NUMBER:
        return None
    # Numeric identifiers beyond uint64 are alphanumeric to Masterminds but numbers to
    # python-semver, so the two would order them differently: such a tag is not a version.
    if pre is not None and any(
        part.isdigit() and int(part) > MAX_NUMBER for part in pre.split(".")
    ):
        return None
    version = Version(*numbers, pre, match["build"])
    precision = 3 if patch is not None else 2 if minor is not None else 1
    return TagVersion(tag=tag, version=version, precision=precision, prefixed=bool(match["prefix"]))


def parse_version(tag: str) -> Version | None:
    """The version a tag names, or None when the tag is not a version (``latest``, dates, ...)."""
    parsed = parse_tag(tag)
    return parsed.version if parsed is not None else None


# --------------------------------------------------------------------------------------------
# Ordering: Masterminds' Version.Compare
# --------------------------------------------------------------------------------------------

# (major, minor, patch, pre-release or ""): all that Compare and the constraints look at.
_Key = tuple[int, int, int, str]


def _key(version: Version) -> _Key:
    return (version.major, version.minor, version.patch, version.prerelease or "")


def _uint64(text: str) -> int | None:
    """Go's ``strconv.ParseUint(text, 10, 64)``: ASCII digits only, at most 2**64 - 1."""
    if text.isascii() and text.isdigit():
        value = int(text)
        if value <= MAX_NUMBER:
            return value
    return None


def _compare_pre_part(s: str, o: str) -> int:
    """``comparePrePart``: numbers (as uint64) sort before words; words compare bytewise."""
    if s == o:
        return 0
    if s == "":
        return -1
    if o == "":
        return 1
    s_number, o_number = _uint64(s), _uint64(o)
    if s_number is None and o_number is None:
        return 1 if s > o else -1
    if o_number is None:
        return -1
    if s_number is None:
        return 1
    return 1 if s_number > o_number else -1


def _compare_prerelease(s: str, o: str) -> int:
    """``comparePrerelease``: identifier by identifier; a missing one sorts first."""
    s_parts, o_parts = s.split("."), o.split(".")
    for index in range(max(len(s_parts), len(o_parts))):
        s_part = s_parts[index] if index < len(s_parts) else ""
        o_part = o_parts[index] if index < len(o_parts) else ""
        result = _compare_pre_part(s_part, o_part)
        if result:
            return result
    return 0


def _compare_keys(a: _Key, b: _Key) -> int:
    if a[:3] != b[:3]:
        return -1 if a[:3] < b[:3] else 1
    if a[3] == b[3]:
        return 0
    if a[3] == "":
        return 1
    if b[3] == "":
        return -1
    return _compare_prerelease(a[3], b[3])


def compare(a: Version, b: Version) -> int:
    """-1, 0 or 1 as Masterminds' ``Version.Compare`` orders ``a`` and ``b`` (build ignored).

    The same as python-semver's ordering on every version ``parse_tag`` accepts; the two differ
    only for numeric pre-release identifiers beyond 64 bits, which ``parse_tag`` refuses.
    """
    return _compare_keys(_key(a), _key(b))


# --------------------------------------------------------------------------------------------
# Ranges: Masterminds' NewConstraint and Constraints.Check
# --------------------------------------------------------------------------------------------


class InvalidRange(ValueError):
    """A range Masterminds would reject (or that we refuse on purpose); names the input."""

    def __init__(self, text: str, problem: str) -> None:
        super().__init__(f"invalid version range {text!r}: {problem}")
        self.text = text
        self.problem = problem


# Go's RE2 ``\s`` is exactly these five: no \v, no Unicode spaces (Python's ``\s`` has both).
_WS = "\t\n\f\r "
_S = r"[\t\n\f\r ]"
# Masterminds' cvRegex; ``[0-9|x|X|\*]`` really admits "|" too. We also accept a ``V`` prefix.
_XPART = r"[0-9|xX*]+"
_CV = (
    rf"[vV]?{_XPART}(?:\.{_XPART})?(?:\.{_XPART})?"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)
_CV_RE = re.compile(
    rf"[vV]?(?P<major>{_XPART})(?P<minor>\.{_XPART})?(?P<patch>\.{_XPART})?"
    r"(?P<pre>-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)
# constraintRangeRegex: "A - B" anywhere in the text, rewritten to ">= A, <= B " before the
# text is split on "||" (so "1 - 2||3 - 4" is an error in Masterminds, and here).
_HYPHEN_RANGE_RE = re.compile(rf"{_S}*(?P<a>{_CV}){_S}+-{_S}+(?P<b>{_CV}){_S}*")
# coerceNewVersion's looseSemVerRegex (NewVersion, which parses the version in a comparator).
_LOOSE_VERSION_RE = re.compile(
    r"[vV]?(?P<major>[0-9]+)(?:\.(?P<minor>[0-9]+))?(?:\.(?P<patch>[0-9]+))?"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)
_OP_CHARS = "=!<>~^"
_OPERATORS = frozenset({"", "=", "!=", ">", "<", ">=", "=>", "<=", "=<", "~", "~>", "^"})
_WILDCARDS = frozenset({"x", "X", "*"})


@dataclass(frozen=True, slots=True)
class _Comparator:
    """One parsed comparator, as Masterminds' ``constraint``: operator, version, wildcards.

    ``dirty`` means a wildcard or missing number (``1.x``, ``1.2``, ``*``); ``minor_dirty`` that
    the minor is the first wildcard (``1.x``, ``1``), ``patch_dirty`` that the patch is
    (``1.2.x``, ``1.2``). ``version`` fills the wildcards with zeros (``1.x`` → ``1.0.0``).
    """

    op: str
    version: _Key
    dirty: bool
    minor_dirty: bool
    patch_dirty: bool

    def check(self, v: _Key, include_prerelease: bool) -> bool:
        # Every Masterminds constraint function starts with this; the flag is per AND group.
        if v[3] and not include_prerelease:
            return False
        return _CHECKS[self.op](self, v)


def _check_tilde_or_equal(c: _Comparator, v: _Key) -> bool:
    if c.dirty:
        return _check_tilde(c, v)
    return _compare_keys(v, c.version) == 0


def _check_not_equal(c: _Comparator, v: _Key) -> bool:
    con = c.version
    if c.dirty:
        if con[0] != v[0]:
            return True
        if con[1] != v[1] and not c.minor_dirty:
            return True
        if c.minor_dirty:
            return False
        if con[2] != v[2] and not c.patch_dirty:
            return True
        if c.patch_dirty:
            # "!=1.2" excludes 1.2.x, but not 1.2.x pre-releases unless their pre-release
            # equals the comparator's (Masterminds compares only the pre-release here).
            if v[3] or con[3]:
                return _compare_prerelease(v[3], con[3]) != 0
            return False
    return _compare_keys(v, con) != 0


def _check_greater_than(c: _Comparator, v: _Key) -> bool:
    con = c.version
    if not c.dirty:
        return _compare_keys(v, con) == 1
    if v[0] != con[0]:
        return v[0] > con[0]
    if c.minor_dirty:  # ">1" or ">1.x": the next major
        return False
    if c.patch_dirty:  # ">1.2" or ">1.2.x": the next minor
        return v[1] > con[1]
    return _compare_keys(v, con) == 1  # ">*", ">x-rc": above 0.0.0(-rc)


def _check_less_than(c: _Comparator, v: _Key) -> bool:
    # Wildcards do not matter: "<2.0" is "< 2.0.0", so 2.0.0-rc.1 is below it.
    return _compare_keys(v, c.version) < 0


def _check_greater_than_equal(c: _Comparator, v: _Key) -> bool:
    return _compare_keys(v, c.version) >= 0


def _check_less_than_equal(c: _Comparator, v: _Key) -> bool:
    con = c.version
    if not c.dirty:
        return _compare_keys(v, con) <= 0
    if v[0] > con[0]:
        return False
    # "<=1.2" admits every 1.2.x; "<=1" every 1.x; "<=*" reads as "<=0.0.x" (as Masterminds).
    return not (v[0] == con[0] and v[1] > con[1] and not c.minor_dirty)


def _check_tilde(c: _Comparator, v: _Key) -> bool:
    con = c.version
    if _compare_keys(v, con) < 0:
        return False
    if con[:3] == (0, 0, 0) and not c.minor_dirty and not c.patch_dirty:
        return True  # "~0.0.0" and "~*" are ">=0.0.0"
    if v[0] != con[0]:
        return False
    return v[1] == con[1] or c.minor_dirty


def _check_caret(c: _Comparator, v: _Key) -> bool:
    con = c.version
    if _compare_keys(v, con) < 0:
        return False
    if con[0] > 0 or c.minor_dirty:
        return v[0] == con[0]
    if v[0] > 0:
        return False
    if con[1] > 0 or c.patch_dirty:
        return v[1] == con[1]
    if v[1] > 0:
        return False
    # "^0.0.3" is "=0.0.3"; "^*" reads as "^0.0.0" and so admits 0.0.0 only (as Masterminds).
    return v[2] == con[2]


_CHECKS = {
    "": _check_tilde_or_equal,
    "=": _check_tilde_or_equal,
    "!=": _check_not_equal,
    ">": _check_greater_than,
    "<": _check_less_than,
    ">=": _check_greater_than_equal,
    "=>": _check_greater_than_equal,
    "<=": _check_less_than_equal,
    "=<": _check_less_than_equal,
    "~": _check_tilde,
    "~>": _check_tilde,
    "^": _check_caret,
}


@dataclass(frozen=True, slots=True)
class Range:
    """A Masterminds/semver v3 constraint: ``||`` alternatives of AND-ed comparators.

    Deliberate differences from Masterminds v3.5.0 (docs/engine.md has the table): numbers with
    leading zeros are rejected (as in tags; Masterminds reads ``01`` as ``1``), and ``V`` is
    accepted like ``v``. Everything else, including its oddities (``^*`` admits only 0.0.0,
    ``1.x.|`` is ``1.x``), is Masterminds' meaning, so a range copied from Flux selects the
    same versions here.
    """

    text: str
    alternatives: tuple[tuple[_Comparator, ...], ...]

    @classmethod
    def parse(cls, text: str) -> Range:
        """Parse a range; raise InvalidRange with the offending text on any syntax error."""
        if not isinstance(text, str):
            raise InvalidRange(str(text), "not a string")
        if not text.strip(_WS):
            raise InvalidRange(text, "empty range")
        if len(text.encode("utf-8", "surrogatepass")) > MAX_RANGE_LENGTH:
            raise InvalidRange(text, f"longer than {MAX_RANGE_LENGTH} bytes")
        rewritten = _rewrite_hyphen_ranges(text)
        groups = rewritten.split("||")
        if len(groups) > MAX_RANGE_GROUPS:
            raise InvalidRange(text, f"more than {MAX_RANGE_GROUPS} '||' alternatives")
        alternatives = tuple(
            tuple(_comparator(text, op, cv) for op, cv in _split_group(text, group))
            for group in groups
        )
        return cls(text=text, alternatives=alternatives)

    def contains(self, version: Version, *, include_prerelease: bool = False) -> bool:
        """True if ``version`` satisfies some alternative (Masterminds' ``Check``).

        A pre-release satisfies an alternative only if one of its comparators names a
        pre-release, unless ``include_prerelease`` (Masterminds' ``IncludePrerelease``) is set,
        for users who opted into pre-releases with an annotation.
        """
        v = _key(version)
        return any(
            all(c.check(v, include_prerelease or _names_prerelease(group)) for c in group)
            for group in self.alternatives
        )

    @property
    def names_prerelease(self) -> bool:
        """True if some alternative names a pre-release (``>=1.0.0-0``), and so admits them."""
        return any(_names_prerelease(group) for group in self.alternatives)

    def __str__(self) -> str:
        return self.text


def _names_prerelease(group: tuple[_Comparator, ...]) -> bool:
    """Masterminds' ``containsPre``: a comparator of the group has a pre-release."""
    return any(c.version[3] for c in group)


def _rewrite_hyphen_ranges(text: str) -> str:
    """``rewriteRange``: each ``A - B`` becomes ``>= A, <= B `` (first occurrence of its text)."""
    rewritten = text
    for match in _HYPHEN_RANGE_RE.finditer(text):
        rewritten = rewritten.replace(match.group(0), f">= {match['a']}, <= {match['b']} ", 1)
    return rewritten


def _skip_whitespace(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WS:
        pos += 1
    return pos


def _split_group(text: str, group: str) -> list[tuple[str, str]]:
    """One ``||`` alternative as (operator, version) pairs, or InvalidRange.

    Equivalent to Masterminds' validConstraintRegex followed by findConstraintRegex, written as
    a scanner (the regex backtracks exponentially in Python): comparators are separated by
    whitespace and/or one comma, an operator may be followed by whitespace, and a version runs
    to the next whitespace or comma.
    """
    if not group.strip(_WS):
        raise InvalidRange(text, "empty alternative around '||'")
    pairs: list[tuple[str, str]] = []
    pos = _skip_whitespace(group, 0)
    while True:
        end = pos
        while end < len(group) and group[end] in _OP_CHARS:
            end += 1
        op = group[pos:end]
        if op not in _OPERATORS:
            raise InvalidRange(text, f"unknown operator {op!r}")
        pos = _skip_whitespace(group, end)
        end = pos
        while end < len(group) and group[end] not in _WS and group[end] != ",":
            end += 1
        version = group[pos:end]
        if not version:
            what = "a trailing comma" if pos == len(group) else repr(group[pos])
            raise InvalidRange(text, f"expected a version, found {what}")
        if _CV_RE.fullmatch(version) is None:
            raise InvalidRange(text, f"cannot parse {version!r}")
        pairs.append((op, version))
        pos = _skip_whitespace(group, end)
        if pos == len(group):
            return pairs
        if group[pos] == ",":
            pos = _skip_whitespace(group, pos + 1)


def _comparator(text: str, op: str, cv: str) -> _Comparator:
    """``parseConstraint``: wildcards and missing numbers become zeros and mark the comparator.

    Everything after the first wildcard is ignored (``1.x.3`` is ``1.x``), as in Masterminds.
    """
    match = _CV_RE.fullmatch(cv)
    assert match is not None  # _split_group checked it
    major, minor, patch = match["major"], match["minor"] or "", match["patch"] or ""
    pre = match["pre"] or ""
    dirty = minor_dirty = patch_dirty = True
    if major in _WILDCARDS:
        spelled = f"0.0.0{pre}"
        minor_dirty = patch_dirty = False
    elif not minor or minor[1:] in _WILDCARDS:
        spelled = f"{major}.0.0{pre}"
        patch_dirty = False
    elif not patch or patch[1:] in _WILDCARDS:
        spelled = f"{major}{minor}.0{pre}"
        minor_dirty = False
    else:
        spelled = cv
        dirty = minor_dirty = patch_dirty = False
    return _Comparator(op, _new_version(text, spelled), dirty, minor_dirty, patch_dirty)


def _new_version(text: str, spelled: str) -> _Key:
    """Masterminds' ``NewVersion`` for the version inside a comparator, leading zeros refused."""
    if len(spelled) > MAX_VERSION_LENGTH:
        raise InvalidRange(text, f"version {spelled[:20]!r}... longer than 256 bytes")
    match = _LOOSE_VERSION_RE.fullmatch(spelled)
    if match is None:
        raise InvalidRange(text, f"cannot parse {spelled!r}")
    numbers = []
    for raw in (match["major"], match["minor"] or "0", match["patch"] or "0"):
        if len(raw) > 1 and raw.startswith("0"):
            raise InvalidRange(text, f"leading zero in {raw!r}")
        value = int(raw)
        if value > MAX_NUMBER:
            raise InvalidRange(text, f"{raw} does not fit in 64 bits")
        numbers.append(value)
    pre = match["pre"] or ""
    for identifier in pre.split(".") if pre else ():
        if identifier.isdigit() and len(identifier) > 1 and identifier.startswith("0"):
            raise InvalidRange(text, f"leading zero in pre-release {pre!r}")
    return (numbers[0], numbers[1], numbers[2], pre)
