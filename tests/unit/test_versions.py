"""Tags as versions and Masterminds-compatible ranges (operator_app.core.versions).

Real: the parser and the range evaluator over ``semver.Version``. Faked: nothing. Range
expectations come from Masterminds/semver v3.5.0's constraints.go, and Flux's accept/reject
lists for ``ImagePolicy.spec.policy.semver.range``; test_versions_masterminds.py checks the same
against the Go library itself.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from semver import Version

from operator_app.core.policy import Policy, PolicySpec, choose_target
from operator_app.core.versions import InvalidRange, Range, compare, parse_tag, parse_version


def v(text: str) -> Version:
    return Version.parse(text)


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("1.2.3", "1.2.3"),
        ("v1.2.3", "1.2.3"),
        ("V1.2.3", "1.2.3"),
        ("1.2", "1.2.0"),
        ("v1.2", "1.2.0"),
        ("1", "1.0.0"),
        ("v2", "2.0.0"),
        ("0.0.0", "0.0.0"),
        ("1.2.3-rc.1", "1.2.3-rc.1"),
        ("1.2.3-alpine", "1.2.3-alpine"),
        ("1.2.3+build.5", "1.2.3+build.5"),
        ("1.2.3-rc.1+b", "1.2.3-rc.1+b"),
        ("1.2.3-0a.1", "1.2.3-0a.1"),
        ("20240101", "20240101.0.0"),
        ("latest", None),
        ("stable", None),
        ("main", None),
        ("3f2a1b0", None),
        ("", None),
        ("v", None),
        ("vv1.2.3", None),
        ("1.2.3.4", None),
        ("2024-01-01", None),
        ("2024.01.01", None),
        ("1.2-rc.1", None),
        ("1-rc.1", None),
        ("1.2+b", None),
        ("01.2.3", None),
        ("1.02.3", None),
        ("1.2.03", None),
        ("1.2.3-01", None),
        ("1.2.3-", None),
        ("1.2.3+", None),
        ("1.2.3-rc..1", None),
        (" 1.2.3", None),
        ("1.2.3 ", None),
        ("1.2.3\n", None),
        ("release-1.2.3", None),
        ("\u0661.\u0662.\u0663", None),  # Arabic-Indic digits are not ASCII digits
        # Masterminds keeps numbers in uint64 and versions to 256 bytes.
        ("18446744073709551615.0.0", "18446744073709551615.0.0"),
        ("99999999999999999999.0.0", None),
        ("1.18446744073709551616", None),
        ("1.2.18446744073709551616", None),
        ("1.2.3-rc.18446744073709551615", "1.2.3-rc.18446744073709551615"),
        ("1.2.3-rc.18446744073709551616", None),  # Masterminds orders it as a word
        ("1.2.3+" + "b" * 250, "1.2.3+" + "b" * 250),  # 256 bytes
        ("1.2.3+" + "b" * 251, None),
    ],
)
def test_parse_version(tag: str, expected: str | None) -> None:
    result = parse_version(tag)
    if expected is None:
        assert result is None
    else:
        assert result is not None
        assert str(result) == expected


def test_build_metadata_is_ignored_in_ordering() -> None:
    a, b = parse_version("1.2.3+b1"), parse_version("1.2.3+b2")
    assert a is not None and b is not None
    assert a == b and not a < b and not b < a


@pytest.mark.parametrize(
    ("tag", "precision", "prefixed"),
    [("1", 1, False), ("v1.2", 2, True), ("1.2.3-rc.1", 3, False), ("V0.0.1", 3, True)],
)
def test_parse_tag_spelling(tag: str, precision: int, prefixed: bool) -> None:
    parsed = parse_tag(tag)
    assert parsed is not None
    assert (parsed.tag, parsed.precision, parsed.prefixed) == (tag, precision, prefixed)


# ---------------------------------------------------------------------------------------------
# Ranges
# ---------------------------------------------------------------------------------------------

RANGE_CASES: list[tuple[str, list[str], list[str]]] = [
    # (range, contained, not contained)
    ("1.0.x", ["1.0.0", "1.0.9"], ["0.9.9", "1.1.0", "1.0.1-rc.1"]),
    ("^1.0", ["1.0.0", "1.9.9"], ["0.9.0", "2.0.0"]),
    ("=1.0.0", ["1.0.0", "1.0.0+build"], ["1.0.1", "0.9.0"]),
    ("1.0.0", ["1.0.0"], ["1.0.1"]),
    ("v1.0.0", ["1.0.0"], ["1.0.1"]),
    ("~1.0", ["1.0.0", "1.0.7"], ["1.1.0", "0.9.0"]),
    (">=1.0", ["1.0.0", "7.0.0"], ["0.9.9", "1.0.0-rc.1"]),
    (">0,<2.0", ["1.0.0", "1.9.9"], ["0.0.1", "0.9.9", "2.0.0", "1.5.0-rc.1"]),  # >0: major > 0
    ("*", ["0.0.0", "99.0.0"], ["1.0.0-rc.1"]),
    ("x", ["1.2.3"], []),
    ("1.x", ["1.0.0", "1.9.0"], ["2.0.0", "0.9.0"]),
    ("1.X", ["1.3.0"], ["2.0.0"]),
    ("1.*", ["1.3.0"], ["2.0.0"]),
    ("1.2.x", ["1.2.0", "1.2.9"], ["1.3.0", "1.1.9"]),
    ("1.2.*", ["1.2.0", "1.2.9"], ["1.3.0"]),
    ("1.2", ["1.2.0", "1.2.9"], ["1.3.0"]),
    ("1", ["1.0.0", "1.9.9"], ["2.0.0"]),
    ("1.x.3", ["1.0.0", "1.9.0"], ["2.0.0"]),  # Masterminds: wildcard swallows the rest
    ("!=1.2.3", ["1.2.2", "1.2.4"], ["1.2.3"]),
    ("!=1.2", ["1.1.9", "1.3.0"], ["1.2.0", "1.2.9"]),
    (">1.2.3", ["1.2.4"], ["1.2.3", "1.2.2"]),
    (">1.2", ["1.3.0"], ["1.2.0", "1.2.9"]),
    (">1", ["2.0.0"], ["1.9.9"]),
    ("<1.2.3", ["1.2.2", "0.0.0"], ["1.2.3", "1.2.3-rc.1"]),
    ("<1.2", ["1.1.9"], ["1.2.0"]),
    ("<=1.2.3", ["1.2.3"], ["1.2.4"]),
    ("<=1.2", ["1.2.9", "0.1.0"], ["1.3.0"]),
    ("=<1.2", ["1.2.9"], ["1.3.0"]),
    ("=>1.2", ["1.2.0"], ["1.1.9"]),
    ("~1.2.3", ["1.2.3", "1.2.9"], ["1.3.0", "1.2.2"]),
    ("~>1.2.3", ["1.2.3", "1.2.9"], ["1.3.0"]),
    ("~1", ["1.0.0", "1.9.0"], ["2.0.0", "0.9.0"]),
    ("~0", ["0.0.0", "0.9.0"], ["1.0.0"]),
    ("~1.x", ["1.0.0", "1.9.0"], ["2.0.0"]),
    ("~0.0.0", ["0.0.0", "5.0.0"], []),  # Masterminds special case: ~0.0.0 is >=0.0.0
    ("^1.2.3", ["1.2.3", "1.9.9"], ["2.0.0", "1.2.2"]),
    ("^0.2.3", ["0.2.3", "0.2.9"], ["0.3.0", "0.2.2", "1.0.0"]),
    ("^0.0.3", ["0.0.3"], ["0.0.4", "0.0.2", "0.1.0"]),
    ("^0", ["0.0.0", "0.9.9"], ["1.0.0"]),
    ("^0.0", ["0.0.0", "0.0.9"], ["0.1.0"]),
    ("^0.x", ["0.5.0"], ["1.0.0"]),
    ("^1.x", ["1.0.0", "1.5.0"], ["2.0.0"]),
    ("^0.2.x", ["0.2.0", "0.2.9"], ["0.3.0"]),
    ("1.2 - 1.4.5", ["1.2.0", "1.4.5"], ["1.1.9", "1.4.6"]),
    ("1.2.3 - 2.3", ["1.2.3", "2.3.9"], ["2.4.0", "1.2.2"]),
    ("1 - 2", ["1.0.0", "2.9.9"], ["3.0.0"]),
    (">= 1.2, < 1.4", ["1.2.0", "1.3.9"], ["1.4.0"]),
    (">=1.2 <1.4", ["1.3.0"], ["1.4.0"]),
    ("  >=1.2   <1.4  ", ["1.3.0"], ["1.4.0"]),
    (">=1.2,<1.4", ["1.3.0"], ["1.4.0"]),
    (">=1.2 , <1.4", ["1.3.0"], ["1.4.0"]),
    ("<1.0 || >=2.0", ["0.9.0", "2.0.0"], ["1.0.0", "1.9.9"]),
    ("1.x || 3.x||5.0.0", ["1.1.0", "3.0.0", "5.0.0"], ["2.0.0", "5.0.1"]),
    (">=1.0.0+build.1", ["1.0.0"], ["0.9.9"]),  # build metadata in a range is ignored
    (">=V1.2", ["1.2.0"], ["1.1.0"]),
    # Pre-release rule: a pre-release satisfies only comparators that name a pre-release.
    (">=1.2.3-0", ["1.2.3-rc.1", "1.3.0-rc.1", "9.0.0-alpha", "1.2.3"], ["1.2.2"]),
    # Since Masterminds 3.4 one comparator naming a pre-release admits them for its AND group.
    (">=1.0.0-0 <2.0.0", ["1.0.0", "1.5.0-rc.1", "2.0.0-rc.1"], ["2.0.0", "0.9.0"]),
    (">=1.0.0-0, !=1.5.0", ["1.3.0-rc.1", "1.5.0-rc.1"], ["1.5.0"]),
    ("1.x || >=2.0.0-rc.1", ["1.5.0", "2.0.0-rc.2", "3.0.0-beta"], ["1.5.0-rc.1"]),
    (">=1.0.0-0 <2.0.0-0", ["1.5.0-rc.1", "1.5.0"], ["2.0.0-rc.1", "2.0.0"]),
    ("1.2.3-rc.1", ["1.2.3-rc.1"], ["1.2.3-rc.2", "1.2.3"]),
    (">1.2.3-rc.1", ["1.2.3-rc.2", "1.2.3", "1.4.0-beta"], ["1.2.3-rc.0"]),
    ("^1.2.3-beta", ["1.2.3-beta", "1.9.0-rc.1", "1.2.3"], ["2.0.0-rc.1", "1.2.3-alpha"]),
    ("~1.2.3-beta.2", ["1.2.3-beta.3", "1.2.9"], ["1.3.0-alpha", "1.2.3-beta.1"]),
    ("2.x-0", ["2.0.0-rc.1", "2.5.0"], ["3.0.0-rc.1", "1.9.9"]),
    ("*-0", ["1.0.0-rc.1", "0.0.0"], []),
    # Masterminds' reading of wildcards with every operator (constraints.go), oddities included.
    ("^*", ["0.0.0"], ["0.0.1", "1.0.0"]),  # the * reads as 0.0.0
    ("<=*", ["0.0.9"], ["0.1.0", "1.0.0"]),
    ("!=*", ["0.0.1", "1.0.0"], ["0.0.0"]),
    (">*", ["0.0.1"], ["0.0.0"]),
    ("<*", [], ["0.0.0"]),
    ("~*", ["0.0.0", "9.0.0"], []),
    (">1.x", ["2.0.0"], ["1.9.9"]),
    ("<=1.x", ["1.9.9", "0.0.1"], ["2.0.0"]),
    ("!=1.x", ["0.9.0", "2.0.0"], ["1.0.0", "1.9.9"]),
    ("1.x.|", ["1.0.0", "1.9.0"], ["2.0.0"]),  # "|" is in Masterminds' character class
    ("x.|", ["0.0.0", "9.9.9"], []),
    (">1.0.0-a", ["1.0.0-b", "1.0.0"], ["1.0.0-a", "1.0.0-1"]),
]


@pytest.mark.parametrize(("text", "inside", "outside"), RANGE_CASES)
def test_range_contains(text: str, inside: list[str], outside: list[str]) -> None:
    parsed = Range.parse(text)
    assert str(parsed) == text
    for version in inside:
        assert parsed.contains(v(version)), f"{version} should satisfy {text}"
    for version in outside:
        assert not parsed.contains(v(version)), f"{version} should not satisfy {text}"


@pytest.mark.parametrize(
    ("text", "names_prerelease"),
    [(">=1.0", False), (">=1.0.0-0", True), ("1.x || >=2.0.0-rc.1", True), ("^1.2", False)],
)
def test_names_prerelease(text: str, names_prerelease: bool) -> None:
    assert Range.parse(text).names_prerelease is names_prerelease


def test_include_prerelease_switches_off_the_prerelease_rule() -> None:
    parsed = Range.parse(">=1.0 <2.0")
    assert not parsed.contains(v("1.5.0-rc.1"))
    assert parsed.contains(v("1.5.0-rc.1"), include_prerelease=True)
    assert not parsed.contains(v("2.0.0"), include_prerelease=True)


def test_not_equal_does_not_block_prereleases() -> None:
    """Defect 1: ``!=`` refused every pre-release although its group names one."""
    assert Range.parse(">=1.0.0-0, !=1.5.0").contains(v("1.3.0-rc.1"))


def test_one_prerelease_comparator_admits_prereleases_for_its_group() -> None:
    """Defect 2: the pre-release rule is per AND group since Masterminds 3.4 (containsPre)."""
    parsed = Range.parse(">=1.0.0-0 <2.0.0")
    assert parsed.contains(v("1.5.0-rc.1"))
    assert parsed.names_prerelease
    # Only for that group: the other alternative still refuses pre-releases.
    either = Range.parse("^1.0 || >=3.0.0-0")
    assert not either.contains(v("1.5.0-rc.1"))
    assert either.contains(v("3.1.0-rc.1"))


@pytest.mark.parametrize("space", ["\u00a0", "\u2003", "\x0b", "\x1c", "\u3000"])
def test_only_ascii_whitespace_separates(space: str) -> None:
    """Defect 3: Go's RE2 ``\\s`` is [\\t\\n\\f\\r ]; Python's is Unicode-aware."""
    for text in (f">=1.0{space}<2.0", f"{space}>=1.0", f">=1.0,{space}<2.0", f">={space}1.0"):
        with pytest.raises(InvalidRange):
            Range.parse(text)


@pytest.mark.parametrize("space", ["\t", "\n", "\f", "\r", " "])
def test_go_whitespace_separates(space: str) -> None:
    parsed = Range.parse(f"{space}>={space}1.0{space}<2.0{space}")
    assert parsed.contains(v("1.5.0")) and not parsed.contains(v("2.0.0"))


@pytest.mark.parametrize(
    "text",
    [
        ">=18446744073709551616",
        "~1.18446744073709551616",
        "1.2.18446744073709551616",
        " " * 506 + ">=1.0.0",  # 513 bytes
        "||".join(["1"] * 33),
        ">=1.2.3+" + "b" * 251,  # the version is 257 bytes
    ],
)
def test_range_limits(text: str) -> None:
    """Defect 4: Masterminds' uint64 numbers, 512-byte ranges, 32 groups, 256-byte versions."""
    with pytest.raises(InvalidRange):
        Range.parse(text)


def test_range_limits_are_inclusive() -> None:
    assert Range.parse(">=18446744073709551615").contains(v("18446744073709551615.0.0"))
    assert Range.parse(" " * 505 + ">=1.0.0").contains(v("1.0.0"))
    assert Range.parse("||".join(["1"] * 32)).contains(v("1.0.0"))
    assert Range.parse(">=1.2.3+" + "b" * 250).contains(v("1.2.3"))


def test_all_policy_never_moves_to_an_out_of_range_number() -> None:
    """Defect 4: ``all`` moved 1.2.3 to 99999999999999999999.0.0."""
    decision = choose_target(
        PolicySpec(policy=Policy.ALL), "1.2.3", ["99999999999999999999.0.0", "1.3.0"]
    )
    assert decision is not None and decision.tag == "1.3.0"


def test_wildcard_upper_bound_is_the_version_itself() -> None:
    """Defect 5: ``<2.0`` is ``< 2.0.0`` in Masterminds, so 2.0.0-rc.1 is below it."""
    parsed = Range.parse("<2.0")
    assert parsed.contains(v("2.0.0-rc.1"), include_prerelease=True)
    assert not parsed.contains(v("2.0.0-rc.1"))
    assert Range.parse(">=1.0 <2.0").contains(v("2.0.0-rc.1"), include_prerelease=True)


def test_not_equal_to_a_partial_version_follows_masterminds() -> None:
    """Defect 5: ``!=1.2`` excludes 1.2.x releases; its pre-releases only by pre-release."""
    parsed = Range.parse("!=1.2")
    assert not parsed.contains(v("1.2.5"))
    assert parsed.contains(v("1.2.5-rc.1"), include_prerelease=True)
    assert not Range.parse("!=1.2-rc.1").contains(v("1.2.5-rc.1"), include_prerelease=True)


def test_prerelease_order_is_masterminds() -> None:
    """Numeric identifiers beyond uint64 are words to Masterminds (bytewise order)."""
    big, bigger = v("1.0.0-18446744073709551616"), v("1.0.0-100000000000000000000")
    assert compare(bigger, big) == -1  # "10..." < "18..." as words
    assert compare(v("1.0.0-5"), big) == -1  # numbers before words
    assert compare(v("1.0.0--"), big) == -1  # "-" < "1" bytewise
    assert not Range.parse(">1.0.0-18446744073709551616").contains(bigger)
    assert compare(v("1.0.0-rc.2"), v("1.0.0-rc.10")) == -1
    assert compare(v("1.0.0-rc"), v("1.0.0-rc.0")) == -1
    assert compare(v("1.0.0+a"), v("1.0.0+b")) == 0
    assert compare(v("1.0.0"), v("1.0.0-rc.1")) == 1


@pytest.mark.parametrize(
    ("text", "names_prerelease"),
    [(">=1.0", False), (">=1.0.0-0 <2", True), ("1.x || >=2.0.0-rc.1", True), ("2.x-0", True),
     (">=1.0.0+build.1", False)],
)
def test_names_prerelease_per_group(text: str, names_prerelease: bool) -> None:
    assert Range.parse(text).names_prerelease is names_prerelease


@pytest.mark.parametrize(
    "text",
    [
        # Flux's rejected ranges.
        "1.0.0p",
        "1x",
        "x1",
        "-1",
        "a",
        "",
        # Ours.
        "   ",
        "1.2.3.4",
        ">=1.0,",
        ",>=1.0",
        ">=1.0,,<2",
        "1.0 ||",
        "|| 1.0",
        "1.0 | 2.0",
        ">>1.0",
        "> = 1.0",
        "=>=1.0",
        "1.0 -2.0",
        "1.0- 2.0",
        ">=1.0 - 2.0",
        "01.2",
        "1.02",
        "1.2.3-01",
        "1.2.3-",
        "1.2.3+",
        "^",
        "~",
        "latest",
        "1.2.3 latest",
        "1 - 2||3 - 4",  # Masterminds rewrites hyphen ranges before it splits on "||"
        ">=1.0\u00a0<2.0",
        "1|2",
    ],
)
def test_range_rejects(text: str) -> None:
    with pytest.raises(InvalidRange) as caught:
        Range.parse(text)
    assert repr(text) in str(caught.value)
    assert isinstance(caught.value, ValueError)


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

_prereleases = st.sampled_from([None, None, None, "0", "alpha", "alpha.1", "beta", "rc.1", "rc.2"])
versions = st.builds(
    Version,
    major=st.integers(0, 4),
    minor=st.integers(0, 4),
    patch=st.integers(0, 4),
    prerelease=_prereleases,
)


@given(versions, versions, versions)
def test_half_open_range_contains_exactly_the_interval(a: Version, b: Version, x: Version) -> None:
    parsed = Range.parse(f">={a} <{b}")
    in_interval = a <= x < b
    # Masterminds >= 3.4: a pre-release is admitted when either bound names one.
    admitted = x.prerelease is None or a.prerelease is not None or b.prerelease is not None
    assert parsed.contains(x) == (in_interval and admitted)
    assert parsed.contains(x, include_prerelease=True) == in_interval


@given(versions, versions)
def test_bare_version_is_equality(a: Version, x: Version) -> None:
    assert Range.parse(str(a)).contains(x) == (
        x == a and (x.prerelease is None or bool(a.prerelease))
    )


@given(versions, st.booleans())
def test_tag_spelling_round_trips(version: Version, prefixed: bool) -> None:
    tag = ("v" if prefixed else "") + str(version)
    assert parse_version(tag) == version


@given(st.text(max_size=30))
def test_range_parse_raises_only_invalid_range(text: str) -> None:
    try:
        Range.parse(text)
    except InvalidRange:
        pass
