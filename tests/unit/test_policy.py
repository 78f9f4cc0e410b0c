"""Annotation parsing and target selection (operator_app.core.policy).

Real: PolicySpec parsing, choose_target, decide_digest. Faked: nothing (pure functions).
Several cases pin fixes for upstream bugs (headwind-inventory §19: downgrades under all/glob/
force, pre-releases as upgrades, strict three-part semver, registry-order-dependent choice,
event-source ignored by webhooks).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from operator_app.core.events import EventSource
from operator_app.core.policy import (
    ANNOTATION_APPROVAL_TIMEOUT,
    ANNOTATION_APPROVALS_REQUIRED,
    ANNOTATION_EVENT_SOURCE,
    ANNOTATION_IMAGES,
    ANNOTATION_INCLUDE_PRERELEASE,
    ANNOTATION_MIN_UPDATE_INTERVAL,
    ANNOTATION_PATTERN,
    ANNOTATION_POLICY,
    ANNOTATION_POLLING_INTERVAL,
    ANNOTATION_REQUIRE_APPROVAL,
    ANNOTATION_SEMVER_RANGE,
    Decision,
    EventSourceSetting,
    InvalidPolicy,
    Policy,
    PolicySpec,
    choose_target,
    decide_digest,
)
from operator_app.core.versions import Range, parse_tag, parse_version

SHA_A = "sha256:" + "a" * 64
SHA_B = "sha256:" + "b" * 64


def spec(policy: str, **annotations: str) -> PolicySpec:
    """A PolicySpec from annotations; keyword names are the key without ``headwind.sh/``."""
    values = {f"headwind.sh/{key.replace('_', '-')}": value for key, value in annotations.items()}
    values[ANNOTATION_POLICY] = policy
    return PolicySpec.from_annotations(values)


# ---------------------------------------------------------------------------------------------
# Annotations
# ---------------------------------------------------------------------------------------------


def test_annotation_keys() -> None:
    assert [
        ANNOTATION_POLICY,
        ANNOTATION_PATTERN,
        ANNOTATION_SEMVER_RANGE,
        ANNOTATION_INCLUDE_PRERELEASE,
        ANNOTATION_REQUIRE_APPROVAL,
        ANNOTATION_MIN_UPDATE_INTERVAL,
        ANNOTATION_IMAGES,
        ANNOTATION_EVENT_SOURCE,
        ANNOTATION_POLLING_INTERVAL,
        ANNOTATION_APPROVAL_TIMEOUT,
        ANNOTATION_APPROVALS_REQUIRED,
    ] == [
        "headwind.sh/policy",
        "headwind.sh/pattern",
        "headwind.sh/semver-range",
        "headwind.sh/include-prerelease",
        "headwind.sh/require-approval",
        "headwind.sh/min-update-interval",
        "headwind.sh/images",
        "headwind.sh/event-source",
        "headwind.sh/polling-interval",
        "headwind.sh/approval-timeout",
        "headwind.sh/approvals-required",
    ]


@pytest.mark.parametrize("annotations", [None, {}, {"other/key": "x"}, {ANNOTATION_POLICY: " "}])
def test_defaults(annotations: Mapping[str, str] | None) -> None:
    parsed = PolicySpec.from_annotations(annotations)
    assert parsed == PolicySpec()
    assert parsed.policy is Policy.NONE
    assert parsed.pattern is None
    assert parsed.semver_range is None
    assert parsed.include_prerelease is False
    assert parsed.require_approval is True
    assert parsed.min_update_interval_seconds == 300
    assert parsed.images == frozenset()
    assert parsed.event_source is EventSourceSetting.BOTH
    assert parsed.polling_interval_seconds is None
    assert parsed.approval_timeout_seconds == 86400
    assert parsed.approvals_required == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [(p.value, p) for p in Policy]
    + [("Minor", Policy.MINOR), ("PATCH", Policy.PATCH), (" major ", Policy.MAJOR)],
)
def test_policy_value_is_case_insensitive(value: str, expected: Policy) -> None:
    annotations = {ANNOTATION_POLICY: value, ANNOTATION_PATTERN: ".*"}
    assert PolicySpec.from_annotations(annotations).policy is expected


def test_every_annotation_is_read() -> None:
    parsed = PolicySpec.from_annotations(
        {
            ANNOTATION_POLICY: "glob",
            ANNOTATION_PATTERN: " 1.2.* ",
            ANNOTATION_SEMVER_RANGE: ">=1.2 <2",
            ANNOTATION_INCLUDE_PRERELEASE: "Yes",
            ANNOTATION_REQUIRE_APPROVAL: "false",
            ANNOTATION_MIN_UPDATE_INTERVAL: "0",
            ANNOTATION_IMAGES: "app, sidecar,,",
            ANNOTATION_EVENT_SOURCE: "Webhook",
            ANNOTATION_POLLING_INTERVAL: "600",
            ANNOTATION_APPROVAL_TIMEOUT: "3600",
            ANNOTATION_APPROVALS_REQUIRED: "2",
        }
    )
    assert parsed == PolicySpec(
        policy=Policy.GLOB,
        pattern="1.2.*",
        semver_range=Range.parse(">=1.2 <2"),
        include_prerelease=True,
        require_approval=False,
        min_update_interval_seconds=0,
        images=frozenset({"app", "sidecar"}),
        event_source=EventSourceSetting.WEBHOOK,
        polling_interval_seconds=600,
        approval_timeout_seconds=3600,
        approvals_required=2,
    )


@pytest.mark.parametrize(
    ("annotations", "annotation", "value"),
    [
        ({ANNOTATION_POLICY: "sometimes"}, ANNOTATION_POLICY, "sometimes"),
        ({ANNOTATION_POLICY: "glob:1.*"}, ANNOTATION_POLICY, "glob:1.*"),
        ({ANNOTATION_POLICY: "glob"}, ANNOTATION_PATTERN, None),
        ({ANNOTATION_POLICY: "glob", ANNOTATION_PATTERN: "  "}, ANNOTATION_PATTERN, None),
        ({ANNOTATION_POLICY: "regexp"}, ANNOTATION_PATTERN, None),
        ({ANNOTATION_POLICY: "regexp", ANNOTATION_PATTERN: "(v1"}, ANNOTATION_PATTERN, "(v1"),
        ({ANNOTATION_SEMVER_RANGE: "1x"}, ANNOTATION_SEMVER_RANGE, "1x"),
        ({ANNOTATION_SEMVER_RANGE: ">=1.0,"}, ANNOTATION_SEMVER_RANGE, ">=1.0,"),
        ({ANNOTATION_INCLUDE_PRERELEASE: "sure"}, ANNOTATION_INCLUDE_PRERELEASE, "sure"),
        ({ANNOTATION_REQUIRE_APPROVAL: "maybe"}, ANNOTATION_REQUIRE_APPROVAL, "maybe"),
        ({ANNOTATION_MIN_UPDATE_INTERVAL: "5m"}, ANNOTATION_MIN_UPDATE_INTERVAL, "5m"),
        ({ANNOTATION_MIN_UPDATE_INTERVAL: "-1"}, ANNOTATION_MIN_UPDATE_INTERVAL, "-1"),
        ({ANNOTATION_POLLING_INTERVAL: "0"}, ANNOTATION_POLLING_INTERVAL, 0),
        ({ANNOTATION_POLLING_INTERVAL: "1.5"}, ANNOTATION_POLLING_INTERVAL, "1.5"),
        ({ANNOTATION_APPROVAL_TIMEOUT: "0"}, ANNOTATION_APPROVAL_TIMEOUT, 0),
        ({ANNOTATION_APPROVALS_REQUIRED: "0"}, ANNOTATION_APPROVALS_REQUIRED, 0),
        ({ANNOTATION_APPROVALS_REQUIRED: "two"}, ANNOTATION_APPROVALS_REQUIRED, "two"),
        ({ANNOTATION_EVENT_SOURCE: "pubsub"}, ANNOTATION_EVENT_SOURCE, "pubsub"),
        ({ANNOTATION_IMAGES: "app,nginx:1.2"}, ANNOTATION_IMAGES, "app,nginx:1.2"),
        ({ANNOTATION_IMAGES: "ghcr.io/org/app"}, ANNOTATION_IMAGES, "ghcr.io/org/app"),
    ],
)
def test_invalid_annotations_name_key_and_value(
    annotations: dict[str, str], annotation: str, value: object
) -> None:
    with pytest.raises(InvalidPolicy) as caught:
        PolicySpec.from_annotations(annotations)
    error = caught.value
    assert isinstance(error, ValueError)
    assert (error.annotation, error.value) == (annotation, value)
    assert annotation in str(error) and repr(value) in str(error)


@pytest.mark.parametrize(
    ("setting", "webhook", "polling"),
    [
        ("both", True, True),
        ("webhook", True, False),
        ("polling", False, True),
        ("none", False, False),
    ],
)
def test_accepts_source(setting: str, webhook: bool, polling: bool) -> None:
    parsed = PolicySpec.from_annotations({ANNOTATION_EVENT_SOURCE: setting})
    assert parsed.accepts_source(EventSource.WEBHOOK) is webhook
    assert parsed.accepts_source(EventSource.POLLING) is polling


def test_applies_to_container() -> None:
    everything = PolicySpec()
    assert everything.applies_to_container("anything")
    some = PolicySpec.from_annotations({ANNOTATION_IMAGES: "app,worker"})
    assert some.applies_to_container("app") and some.applies_to_container("worker")
    assert not some.applies_to_container("istio-proxy")


# ---------------------------------------------------------------------------------------------
# choose_target
# ---------------------------------------------------------------------------------------------

TAGS = [
    "1.2.3",
    "1.2.4",
    "1.2.10",
    "1.2.4-rc.1",
    "1.3.0",
    "v1.3.0",
    "1.3.1-beta",
    "1.4",
    "2.0.0",
    "2.1.0-rc.1",
    "0.9.0",
    "1.2.2",
    "latest",
    "main",
    "1.2.3.4",
]

CHOOSE_CASES: list[tuple[PolicySpec, str, list[str], str | None]] = [
    # none / digest never pick a tag
    (spec("none"), "1.2.3", TAGS, None),
    (spec("digest"), "1.2.3", TAGS, None),
    # patch/minor/major/all: highest newer version in scope, release only
    (spec("patch"), "1.2.3", TAGS, "1.2.10"),
    (spec("minor"), "1.2.3", TAGS, "1.3.0"),
    (spec("major"), "1.2.3", TAGS, "2.0.0"),
    (spec("all"), "1.2.3", TAGS, "2.0.0"),
    (spec("patch"), "v1.2.3", TAGS, "1.2.10"),
    (spec("minor"), "v1.2.3", TAGS, "v1.3.0"),  # equal versions: keep the current spelling
    (spec("minor"), "1.2.3", ["v1.3.0", "1.3.0"], "1.3.0"),
    (spec("minor"), "1.2.3", ["1.3.0+b1", "1.3.0"], "1.3.0"),  # '+' is not valid in a tag
    (spec("patch"), "1.2.10", TAGS, None),
    (spec("major"), "2.0.0", TAGS, None),
    (spec("major"), "3.0.0", TAGS, None),  # everything is older: never downgrade
    (spec("patch"), "1.2.3", ["1.2.3"], None),  # never the same tag
    (spec("minor"), "1.2.3", ["v1.2.3", "1.2.3+build"], None),  # nor the same version
    (spec("minor"), "1.2.3", [], None),
    # pre-releases excluded unless asked for (upstream bug 30)
    (spec("patch"), "1.2.3", ["1.2.4-rc.1"], None),
    (spec("patch", include_prerelease="true"), "1.2.3", ["1.2.4-rc.1"], "1.2.4-rc.1"),
    (spec("patch", include_prerelease="true"), "1.2.3", ["1.2.4-rc.1", "1.2.4"], "1.2.4"),
    (spec("minor"), "1.3.0-rc.1", ["1.3.0-rc.2", "1.3.0"], "1.3.0"),
    (spec("minor"), "1.3.0-rc.1", ["1.3.0-rc.2"], None),
    (spec("minor", semver_range=">=1.3.0-0"), "1.2.3", ["1.3.1-beta"], "1.3.1-beta"),
    # partial versions work (upstream bug 31) and keep their precision
    (spec("minor"), "1.2", ["1.3", "1.2.9", "1.3.5", "2.0"], "1.3"),
    (spec("patch"), "1.2", ["1.2.9", "1.3"], None),
    (spec("major"), "1", ["2", "1.5", "2.1.0"], "2"),
    (spec("minor"), "1.2.3", ["1.4", "1.3.1"], "1.3.1"),
    # current tag not a version: semver policies do nothing, without raising
    (spec("minor"), "latest", TAGS, None),
    (spec("major"), "1.2.3.4", TAGS, None),
    # semver range
    (spec("major", semver_range="<2"), "1.2.3", TAGS, "1.3.0"),
    (spec("major", semver_range="~1.2"), "1.2.3", TAGS, "1.2.10"),
    (spec("minor", semver_range="<1.2.5"), "1.2.3", TAGS, "1.2.4"),
    (spec("major", semver_range=">=5"), "1.2.3", TAGS, None),
    (spec("major", semver_range="1.x || 2.x"), "1.2.3", TAGS, "2.0.0"),
    # glob: whole-tag match, versions must be newer (upstream bug 29), `?` is one character
    (spec("glob", pattern="1.2.*"), "1.2.3", TAGS, "1.2.10"),
    (spec("glob", pattern="1.2.?"), "1.2.3", TAGS, "1.2.4"),
    (spec("glob", pattern="*"), "1.2.3", TAGS, "2.0.0"),
    (spec("glob", pattern="0.*"), "1.2.3", TAGS, None),  # only older matches
    (spec("glob", pattern="1.2"), "1.2.3", TAGS, None),  # anchored: no prefix match
    (spec("glob", pattern="*.*.*"), "1.2.3", TAGS, "2.0.0"),  # any number of stars
    (spec("glob", pattern="*", semver_range="<2"), "1.2.3", TAGS, "1.4"),
    (spec("glob", pattern="build-*"), "build-9", ["build-10", "build-8", "build-9a"], "build-10"),
    (spec("glob", pattern="build-*"), "build-10", ["build-9", "build-010"], None),
    (spec("glob", pattern="main-*"), "main-20240101", ["main-20231231"], None),
    (spec("glob", pattern="main-*"), "main-20240101", ["main-20240102"], "main-20240102"),
    # non-versions rank below versions
    (spec("glob", pattern="*"), "1.2.3", ["latest", "main"], None),
    (spec("glob", pattern="*"), "latest", ["1.0.0", "zzz"], "1.0.0"),
    # glob/regexp variant suffixes: a pre-release current tag opts into pre-releases
    (spec("glob", pattern="*-alpine"), "1.2.3-alpine", ["1.2.4-alpine", "1.2.4"], "1.2.4-alpine"),
    (spec("glob", pattern="1.*"), "1.2.3", ["1.3.0-rc.1"], None),
    (spec("glob", pattern="1.*", include_prerelease="1"), "1.2.3", ["1.3.0-rc.1"], "1.3.0-rc.1"),
    # regexp: fullmatch
    (spec("regexp", pattern=r"1\.2\.\d+"), "1.2.3", TAGS, "1.2.10"),
    (spec("regexp", pattern=r"1\.2"), "1.2.3", TAGS, None),
    (spec("regexp", pattern=r"v?1\.3\.0"), "1.2.3", TAGS, "v1.3.0"),
    (
        spec("regexp", pattern=r"\d+\.\d+\.\d+-alpine"),
        "1.2.3-alpine",
        ["1.2.9-alpine"],
        "1.2.9-alpine",
    ),
    # force: anything different, still no semver downgrade (upstream bug 29)
    (spec("force"), "1.2.3", TAGS, "2.0.0"),
    (spec("force"), "1.2.3", ["0.9.0", "1.2.2"], None),
    (spec("force"), "1.2.3", ["latest"], "latest"),
    (spec("force"), "1.2.3", ["latest", "1.2.4"], "1.2.4"),
    (spec("force"), "main", ["dev"], "dev"),
    (spec("force"), "main", ["main"], None),
    (spec("force"), "1.2.3", ["1.2.4-rc.1"], None),
    (spec("force", semver_range="<1.3"), "1.2.3", TAGS, "1.2.10"),
    # invalid tags are never chosen (they would be written into a pod spec)
    (spec("force"), "1.2.3", ["not a tag", "-x", ""], None),
]


@pytest.mark.parametrize(("policy_spec", "current", "candidates", "expected"), CHOOSE_CASES)
def test_choose_target(
    policy_spec: PolicySpec, current: str, candidates: list[str], expected: str | None
) -> None:
    decision = choose_target(policy_spec, current, candidates)
    if expected is None:
        assert decision is None
    else:
        assert decision is not None
        assert decision.tag == expected
        assert current in decision.reason and expected in decision.reason
        assert policy_spec.policy.value in decision.reason
        assert decision.digest is None


def test_reason_reads_as_a_sentence() -> None:
    assert choose_target(spec("minor"), "1.2.3", ["1.3.0"]) == Decision(
        tag="1.3.0", reason="minor policy: 1.2.3 → 1.3.0"
    )
    decision = choose_target(spec("glob", pattern="1.*", semver_range="<2"), "1.2.3", ["1.3.0"])
    assert decision is not None
    assert decision.reason == "glob policy (1.*, range <2): 1.2.3 → 1.3.0"


def test_candidates_can_be_any_iterable() -> None:
    decision = choose_target(spec("patch"), "1.2.3", (t for t in ["1.2.4", "1.2.5"]))
    assert decision is not None and decision.tag == "1.2.5"


# ---------------------------------------------------------------------------------------------
# decide_digest
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "event", "expected"),
    [
        (SHA_A, SHA_B, SHA_B),
        (SHA_A, SHA_A, None),
        (None, SHA_B, None),
        (SHA_A, None, None),
        (None, None, None),
    ],
)
def test_decide_digest(current: str | None, event: str | None, expected: str | None) -> None:
    decision = decide_digest(current, event, tag="latest")
    if expected is None:
        assert decision is None
    else:
        assert decision == Decision(
            tag="latest",
            reason="digest policy: latest was rebuilt (sha256:aaaaaaaaaaaa → sha256:bbbbbbbbbbbb)",
            digest=expected,
        )


@pytest.mark.parametrize(("current", "event"), [("sha256:abc", SHA_B), (SHA_A, "latest")])
def test_decide_digest_rejects_malformed_digests(current: str, event: str) -> None:
    with pytest.raises(ValueError, match="invalid digest"):
        decide_digest(current, event, tag="1.2")


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

_numbers = st.integers(0, 3)
_pre = st.sampled_from(["", "", "", "-rc.1", "-rc.2", "-alpine", "-0"])


@st.composite
def version_tags(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(["", "", "v"]))
    precision = draw(st.sampled_from([1, 2, 3, 3, 3]))
    numbers = ".".join(str(draw(_numbers)) for _ in range(precision))
    return prefix + numbers + (draw(_pre) if precision == 3 else "")


tags = st.one_of(
    version_tags(),
    version_tags(),
    st.sampled_from(["latest", "main", "dev", "build-9", "build-10", "1.2.3.4", "2024-01-01"]),
)
policies = st.one_of(
    st.sampled_from(
        [spec(p) for p in ("patch", "minor", "major", "all", "force")]
        + [
            spec("glob", pattern="*"),
            spec("glob", pattern="1.*"),
            spec("regexp", pattern=r"v?\d+(\.\d+)*"),
            spec("regexp", pattern=".*"),
            spec("minor", include_prerelease="true"),
            spec("major", semver_range=">=1 <3"),
            spec("all", semver_range=">=0.0.0-0"),
            spec("glob", pattern="*", include_prerelease="true"),
            spec("force", semver_range="^1"),
        ]
    )
)


@given(policies, tags, st.lists(tags, max_size=12))
def test_never_downgrades_or_repeats(
    policy_spec: PolicySpec, current: str, candidates: list[str]
) -> None:
    decision = choose_target(policy_spec, current, candidates)
    if decision is None:
        return
    assert decision.tag in candidates
    assert decision.tag != current
    current_version, target_version = parse_version(current), parse_version(decision.tag)
    if policy_spec.policy.is_semver:
        assert current_version is not None and target_version is not None
    if current_version is not None and target_version is not None:
        assert target_version > current_version
    if policy_spec.policy in (Policy.GLOB, Policy.REGEXP):
        assert policy_spec.pattern is not None
        regex = policy_spec.pattern.replace(".", r"\.").replace("*", ".*")
        if policy_spec.policy is Policy.REGEXP:
            regex = policy_spec.pattern
        assert re.fullmatch(regex, decision.tag)
    if policy_spec.semver_range is not None and target_version is not None:
        assert policy_spec.semver_range.contains(target_version, include_prerelease=True)
    if (
        target_version is not None
        and target_version.prerelease
        and not policy_spec.include_prerelease
    ):
        assert (
            policy_spec.semver_range is not None and policy_spec.semver_range.names_prerelease
        ) or (current_version is not None and current_version.prerelease is not None)


@given(policies, tags, st.lists(tags, max_size=12), st.randoms(use_true_random=False))
def test_independent_of_candidate_order(
    policy_spec: PolicySpec, current: str, candidates: list[str], random: Random
) -> None:
    shuffled = list(candidates) + list(candidates[:3])  # duplicates must not matter either
    random.shuffle(shuffled)
    assert choose_target(policy_spec, current, candidates) == choose_target(
        policy_spec, current, shuffled
    )


@given(version_tags(), st.lists(version_tags(), max_size=12), st.booleans())
def test_patch_never_changes_major_or_minor(
    current: str, candidates: list[str], include_prerelease: bool
) -> None:
    policy_spec = spec("patch", include_prerelease=str(include_prerelease).lower())
    decision = choose_target(policy_spec, current, candidates)
    if decision is not None:
        before, after = parse_version(current), parse_version(decision.tag)
        assert before is not None and after is not None
        assert (after.major, after.minor) == (before.major, before.minor)


@given(version_tags(), st.lists(version_tags(), max_size=12))
def test_minor_never_changes_major_and_keeps_precision(current: str, candidates: list[str]) -> None:
    decision = choose_target(spec("minor"), current, candidates)
    if decision is not None:
        before, after = parse_tag(current), parse_tag(decision.tag)
        assert before is not None and after is not None
        assert after.version.major == before.version.major
        assert after.precision == before.precision


@given(version_tags(), st.lists(version_tags(), max_size=12))
def test_semver_policies_pick_the_highest_eligible(current: str, candidates: list[str]) -> None:
    decision = choose_target(spec("major"), current, candidates)
    chosen = parse_version(decision.tag) if decision else None
    before = parse_tag(current)
    assert before is not None
    for tag in candidates:
        candidate = parse_tag(tag)
        assert candidate is not None
        eligible = (
            candidate.precision == before.precision
            and candidate.version > before.version
            and not candidate.version.prerelease
        )
        if eligible:
            assert chosen is not None and chosen >= candidate.version


def test_annotation_values_are_trimmed_of_ascii_whitespace_only():
    """Flux (Go) reads ranges with ASCII whitespace only; a no-break space is an error there."""
    assert PolicySpec.from_annotations(
        {"headwind.sh/policy": "minor", "headwind.sh/semver-range": " \t>=1.0 "}
    ).semver_range is not None
    with pytest.raises(InvalidPolicy):
        PolicySpec.from_annotations({"headwind.sh/policy": "minor",
                                     "headwind.sh/semver-range": "\u00a0>=1.0"})
