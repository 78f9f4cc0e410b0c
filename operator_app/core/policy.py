"""Annotation-driven update policy, and the choice of one best target tag.

Everything here is a function of its inputs, so the webhook path, the poller and the approval
path all reach the same answer for the same tags. Headwind's Rust original let ``all``, ``glob``
and ``force`` downgrade, treated pre-releases as upgrades, and picked "the last qualifying tag in
registry order"; this module never downgrades, never "updates" to the same tag, excludes
pre-releases unless asked, and is independent of candidate order.

Pure module: stdlib, ``semver`` and sibling core modules only.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from operator_app.core.charts import ChartRef
from operator_app.core.events import EventSource
from operator_app.core.images import ImageRef, is_valid_digest, is_valid_tag, short_digest
from operator_app.core.rollout import (
    ANNOTATION_BAD_VERSIONS,
    ANNOTATION_HOLD,
    InvalidState,
    bad_versions,
    holds,
)
from operator_app.core.versions import InvalidRange, Range, TagVersion, parse_tag
from operator_app.core.windows import InvalidWindow, Schedule, parse_duration, parse_schedule

__all__ = [
    "ANNOTATION_APPROVALS_REQUIRED",
    "ANNOTATION_APPROVAL_TIMEOUT",
    "ANNOTATION_AUTO_ROLLBACK",
    "ANNOTATION_EVENT_SOURCE",
    "ANNOTATION_IMAGES",
    "ANNOTATION_MAINTENANCE_WINDOW",
    "ANNOTATION_MIN_RELEASE_AGE",
    "ANNOTATION_INCLUDE_PRERELEASE",
    "ANNOTATION_MIN_UPDATE_INTERVAL",
    "ANNOTATION_PATTERN",
    "ANNOTATION_POLICY",
    "ANNOTATION_POLLING_INTERVAL",
    "ANNOTATION_REQUIRE_APPROVAL",
    "ANNOTATION_ROLLOUT_TIMEOUT",
    "ANNOTATION_SEMVER_RANGE",
    "Decision",
    "EventSourceSetting",
    "InvalidPolicy",
    "Policy",
    "PolicySpec",
    "choose_target",
    "decide",
    "decide_digest",
]

ANNOTATION_POLICY = "headwind.sh/policy"
ANNOTATION_PATTERN = "headwind.sh/pattern"
ANNOTATION_SEMVER_RANGE = "headwind.sh/semver-range"
ANNOTATION_INCLUDE_PRERELEASE = "headwind.sh/include-prerelease"
ANNOTATION_REQUIRE_APPROVAL = "headwind.sh/require-approval"
ANNOTATION_MIN_UPDATE_INTERVAL = "headwind.sh/min-update-interval"
ANNOTATION_IMAGES = "headwind.sh/images"
ANNOTATION_EVENT_SOURCE = "headwind.sh/event-source"
ANNOTATION_POLLING_INTERVAL = "headwind.sh/polling-interval"
ANNOTATION_APPROVAL_TIMEOUT = "headwind.sh/approval-timeout"
ANNOTATION_APPROVALS_REQUIRED = "headwind.sh/approvals-required"
ANNOTATION_AUTO_ROLLBACK = "headwind.sh/auto-rollback"
ANNOTATION_ROLLOUT_TIMEOUT = "headwind.sh/rollout-timeout"
#: The original operator's name for the same setting; read when rollout-timeout is absent.
ANNOTATION_ROLLBACK_TIMEOUT = "headwind.sh/rollback-timeout"
ANNOTATION_HEALTH_CHECK_RETRIES = "headwind.sh/health-check-retries"
ANNOTATION_MIN_RELEASE_AGE = "headwind.sh/min-release-age"
ANNOTATION_MAINTENANCE_WINDOW = "headwind.sh/maintenance-window"

DEFAULT_MIN_UPDATE_INTERVAL_SECONDS = 300
DEFAULT_APPROVAL_TIMEOUT_SECONDS = 86400
DEFAULT_APPROVALS_REQUIRED = 1
DEFAULT_ROLLOUT_TIMEOUT_SECONDS = 600
DEFAULT_HEALTH_CHECK_RETRIES = 3

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
_UINT_RE = re.compile(r"[0-9]+")
_ASCII_SPACE = " \t\n\r\f"
_CONTAINER_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # DNS-1123 label


class Policy(StrEnum):
    """How far a workload may move. ``digest`` follows rebuilds of the same tag."""

    PATCH = "patch"
    MINOR = "minor"
    MAJOR = "major"
    ALL = "all"
    GLOB = "glob"
    REGEXP = "regexp"
    FORCE = "force"
    NONE = "none"
    DIGEST = "digest"

    @property
    def is_semver(self) -> bool:
        """Policies that compare the current and candidate tags as versions."""
        return self in _SEMVER_POLICIES


_SEMVER_POLICIES = frozenset({Policy.PATCH, Policy.MINOR, Policy.MAJOR, Policy.ALL})


class EventSourceSetting(StrEnum):
    """The ``headwind.sh/event-source`` annotation: which triggers may move this workload."""

    WEBHOOK = "webhook"
    POLLING = "polling"
    BOTH = "both"
    NONE = "none"


class InvalidPolicy(ValueError):
    """A workload's annotations cannot be honoured; the caller logs it and skips the workload."""

    def __init__(self, annotation: str, value: object, problem: str) -> None:
        super().__init__(f"invalid annotation {annotation}={value!r}: {problem}")
        self.annotation = annotation
        self.value = value
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Decision:
    """The one tag to move to, why, the registry's digest for it when known, and (from
    :func:`decide`) the exact image string to write into the pod spec."""

    tag: str
    reason: str
    digest: str | None = None
    image: str = ""


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """A workload's update policy, parsed once from its annotations and validated on creation.

    ``event_source`` defaults to ``both``: webhooks only arrive from registries that an admin
    wired up, and polling is switched on per operator, so "both" simply means "whatever
    triggers this cluster has" rather than silently ignoring one of them (upstream's default
    ``webhook`` made polling a second opt-in that users routinely missed).
    """

    policy: Policy = Policy.NONE
    pattern: str | None = None
    semver_range: Range | None = None
    include_prerelease: bool = False
    require_approval: bool = True
    min_update_interval_seconds: int = DEFAULT_MIN_UPDATE_INTERVAL_SECONDS
    images: frozenset[str] = field(default_factory=frozenset)
    event_source: EventSourceSetting = EventSourceSetting.BOTH
    polling_interval_seconds: int | None = None
    approval_timeout_seconds: int = DEFAULT_APPROVAL_TIMEOUT_SECONDS
    approvals_required: int = DEFAULT_APPROVALS_REQUIRED
    auto_rollback: bool = False
    rollout_timeout_seconds: int = DEFAULT_ROLLOUT_TIMEOUT_SECONDS
    health_check_retries: int = DEFAULT_HEALTH_CHECK_RETRIES
    #: Slots pinned by a manual rollback (``headwind.sh/hold``): nothing moves them.
    held: frozenset[str] = field(default_factory=frozenset)
    #: (slot, version) pairs an automatic rollback took back (``headwind.sh/bad-versions``).
    bad_versions: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    #: A candidate younger than this is not proposed or applied yet (0: no minimum).
    min_release_age_seconds: int = 0
    #: When updates may be applied (None: any time).
    maintenance_window: Schedule | None = None

    def __post_init__(self) -> None:
        if self.policy in (Policy.GLOB, Policy.REGEXP) and not self.pattern:
            raise InvalidPolicy(
                ANNOTATION_PATTERN, self.pattern, f"policy {self.policy.value} needs a pattern"
            )
        if self.policy is Policy.REGEXP:
            try:
                _compile_matcher(self.policy, self.pattern or "")
            except re.error as error:
                raise InvalidPolicy(
                    ANNOTATION_PATTERN, self.pattern, f"not a regular expression: {error}"
                ) from error
        if self.min_update_interval_seconds < 0:
            raise InvalidPolicy(
                ANNOTATION_MIN_UPDATE_INTERVAL, self.min_update_interval_seconds, "negative"
            )
        if self.polling_interval_seconds is not None and self.polling_interval_seconds <= 0:
            raise InvalidPolicy(
                ANNOTATION_POLLING_INTERVAL, self.polling_interval_seconds, "must be positive"
            )
        if self.approval_timeout_seconds <= 0:
            raise InvalidPolicy(
                ANNOTATION_APPROVAL_TIMEOUT, self.approval_timeout_seconds, "must be positive"
            )
        if self.approvals_required < 1:
            raise InvalidPolicy(
                ANNOTATION_APPROVALS_REQUIRED, self.approvals_required, "must be at least 1"
            )
        if self.rollout_timeout_seconds <= 0:
            raise InvalidPolicy(
                ANNOTATION_ROLLOUT_TIMEOUT, self.rollout_timeout_seconds, "must be positive"
            )
        if self.health_check_retries < 1:
            raise InvalidPolicy(
                ANNOTATION_HEALTH_CHECK_RETRIES, self.health_check_retries, "must be at least 1"
            )

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, str] | None) -> PolicySpec:
        """The one annotation parser for every workload kind (upstream had three that drifted).

        Missing or empty values take defaults; a missing policy is ``none``. Any value that is
        present but unusable raises InvalidPolicy rather than being guessed at.
        """
        values = annotations or {}

        def get(key: str) -> str | None:
            # ASCII whitespace only, as Go's \s: a no-break space is no separator to Flux.
            raw = values.get(key)
            if raw is None or not raw.strip(_ASCII_SPACE):
                return None
            return raw.strip(_ASCII_SPACE)

        policy_text = get(ANNOTATION_POLICY)
        try:
            policy = Policy(policy_text.lower()) if policy_text else Policy.NONE
        except ValueError:
            expected = ", ".join(p.value for p in Policy)
            raise InvalidPolicy(
                ANNOTATION_POLICY, values.get(ANNOTATION_POLICY), f"expected one of {expected}"
            ) from None

        range_text = get(ANNOTATION_SEMVER_RANGE)
        try:
            semver_range = Range.parse(range_text) if range_text else None
        except InvalidRange as error:
            raise InvalidPolicy(ANNOTATION_SEMVER_RANGE, range_text, error.problem) from error

        source_text = get(ANNOTATION_EVENT_SOURCE)
        try:
            event_source = (
                EventSourceSetting(source_text.lower()) if source_text else EventSourceSetting.BOTH
            )
        except ValueError:
            expected = ", ".join(s.value for s in EventSourceSetting)
            raise InvalidPolicy(
                ANNOTATION_EVENT_SOURCE, source_text, f"expected one of {expected}"
            ) from None

        polling_text = get(ANNOTATION_POLLING_INTERVAL)
        try:
            held = frozenset(holds(values))
            bad = frozenset((slot, version) for slot, versions in bad_versions(values).items()
                            for version in versions)
        except InvalidState as error:
            key = ANNOTATION_HOLD if ANNOTATION_HOLD in str(error) else ANNOTATION_BAD_VERSIONS
            raise InvalidPolicy(key, values.get(key), str(error)) from None
        timeout_key = (ANNOTATION_ROLLOUT_TIMEOUT if get(ANNOTATION_ROLLOUT_TIMEOUT) is not None
                       else ANNOTATION_ROLLBACK_TIMEOUT)
        age_text = get(ANNOTATION_MIN_RELEASE_AGE)
        try:
            min_release_age = parse_duration(age_text) if age_text else 0
        except ValueError as error:
            raise InvalidPolicy(ANNOTATION_MIN_RELEASE_AGE, age_text, str(error)) from None
        window_text = get(ANNOTATION_MAINTENANCE_WINDOW)
        try:
            window = parse_schedule(window_text) if window_text else None
        except InvalidWindow as error:
            raise InvalidPolicy(ANNOTATION_MAINTENANCE_WINDOW, window_text, str(error)) from None
        return cls(
            policy=policy,
            pattern=get(ANNOTATION_PATTERN),
            semver_range=semver_range,
            include_prerelease=_parse_bool(
                ANNOTATION_INCLUDE_PRERELEASE, get(ANNOTATION_INCLUDE_PRERELEASE), default=False
            ),
            require_approval=_parse_bool(
                ANNOTATION_REQUIRE_APPROVAL, get(ANNOTATION_REQUIRE_APPROVAL), default=True
            ),
            min_update_interval_seconds=_parse_uint(
                ANNOTATION_MIN_UPDATE_INTERVAL,
                get(ANNOTATION_MIN_UPDATE_INTERVAL),
                default=DEFAULT_MIN_UPDATE_INTERVAL_SECONDS,
            ),
            images=_parse_container_names(get(ANNOTATION_IMAGES)),
            event_source=event_source,
            polling_interval_seconds=(
                _parse_uint(ANNOTATION_POLLING_INTERVAL, polling_text, default=0)
                if polling_text
                else None
            ),
            approval_timeout_seconds=_parse_uint(
                ANNOTATION_APPROVAL_TIMEOUT,
                get(ANNOTATION_APPROVAL_TIMEOUT),
                default=DEFAULT_APPROVAL_TIMEOUT_SECONDS,
            ),
            approvals_required=_parse_uint(
                ANNOTATION_APPROVALS_REQUIRED,
                get(ANNOTATION_APPROVALS_REQUIRED),
                default=DEFAULT_APPROVALS_REQUIRED,
            ),
            auto_rollback=_parse_bool(
                ANNOTATION_AUTO_ROLLBACK, get(ANNOTATION_AUTO_ROLLBACK), default=False
            ),
            rollout_timeout_seconds=_parse_uint(
                timeout_key, get(timeout_key), default=DEFAULT_ROLLOUT_TIMEOUT_SECONDS
            ),
            health_check_retries=_parse_uint(
                ANNOTATION_HEALTH_CHECK_RETRIES,
                get(ANNOTATION_HEALTH_CHECK_RETRIES),
                default=DEFAULT_HEALTH_CHECK_RETRIES,
            ),
            held=held,
            bad_versions=bad,
            min_release_age_seconds=min_release_age,
            maintenance_window=window,
        )

    def accepts_source(self, source: EventSource) -> bool:
        """Whether an event from ``source`` may move this workload (upstream ignored this)."""
        if self.event_source is EventSourceSetting.BOTH:
            return True
        if self.event_source is EventSourceSetting.NONE:
            return False
        return self.event_source.value == EventSource(source).value

    def applies_to_container(self, container_name: str) -> bool:
        """``headwind.sh/images`` lists container names; empty means every container."""
        return not self.images or container_name in self.images

    def is_bad(self, slot: str, version: str) -> bool:
        """Was ``version`` of ``slot`` rolled back as bad?"""
        return (slot, version) in self.bad_versions

    def version_key(self, reference: ImageRef | ChartRef) -> str | None:
        """What ``headwind.sh/bad-versions`` records for a reference: its digest under the
        digest policy (a rebuilt tag is a new version), else its tag or chart version."""
        if self.policy is Policy.DIGEST and reference.digest:
            return reference.digest
        return reference.effective_tag


def decide(spec: PolicySpec, current: ImageRef | ChartRef,
           candidates: Mapping[str, str | None], *, slot: str | None = None,
           released: Mapping[str, datetime] | None = None, now: datetime | None = None,
           ) -> Decision | None:
    """The one decision entry point: where should a container running ``current`` move, given
    the tags (and digests, where known) that exist in its repository?

    Webhook events, the poller, the apply task's re-check and the comparison of two proposals
    all ask this, so they cannot disagree. ``current`` is a container image or a chart version
    (a :class:`~operator_app.core.charts.ChartRef`: a version, never a digest). The answer
    carries the exact reference to write:

    * ``digest`` policy: the current tag pinned to the registry's digest for it, when that
      differs from the pinned one (a rebuild); an unpinned tag is pinned;
    * every other policy: the best tag from :func:`choose_target`; a container the user pinned
      ``tag@digest`` stays pinned (to the new tag's digest) when that digest is known.

    None when nothing should move, including a digest-only reference (it names no tag to
    follow) and a result that is the image already running. With ``slot`` (the container or
    ``chart``), a held slot never moves and versions rolled back as bad are not candidates.
    With ``released`` (when each candidate tag was released) and a
    ``headwind.sh/min-release-age``, a candidate younger than that at ``now`` (or of unknown
    age) is not one yet.
    """
    current_tag = current.effective_tag
    if spec.policy is Policy.NONE or current_tag is None:
        return None
    if slot is not None:
        if slot in spec.held:
            return None
        if spec.bad_versions and spec.policy is not Policy.DIGEST:
            candidates = {tag: digest for tag, digest in candidates.items()
                          if not spec.is_bad(slot, tag)}
    if spec.min_release_age_seconds and released is not None:
        candidates = {tag: digest for tag, digest in candidates.items()
                      if old_enough(spec, released.get(tag), now)}
    if spec.policy is Policy.DIGEST:
        digest = _known_digest(candidates, current_tag)
        if digest is None or (slot is not None and spec.is_bad(slot, digest)):
            return None
        if current.digest is None:
            choice = Decision(tag=current_tag, digest=digest,
                              reason=f"digest policy: pin {current_tag} to {short_digest(digest)}")
        else:
            choice = decide_digest(current.digest, digest, tag=current_tag)
            if choice is None:
                return None
        pin: str | None = choice.digest
    else:
        choice = choose_target(spec, current_tag, candidates, valid=current.valid_tag)
        if choice is None:
            return None
        known = _known_digest(candidates, choice.tag)
        choice = Decision(tag=choice.tag, reason=choice.reason, digest=known)
        pin = known if current.digest else None
    image = current.with_tag(choice.tag, pin)
    if image == str(current):
        return None
    return Decision(tag=choice.tag, reason=choice.reason, digest=choice.digest, image=image)


def old_enough(spec: PolicySpec, released: datetime | None, now: datetime | None) -> bool:
    """Is a version released at ``released`` past ``headwind.sh/min-release-age`` at ``now``?
    An unknown release time is not (the caller records when it first saw the tag)."""
    if not spec.min_release_age_seconds:
        return True
    if released is None:
        return False
    return released + timedelta(seconds=spec.min_release_age_seconds) <= (
        now or datetime.now(UTC))


def choose_target(spec: PolicySpec, current_tag: str, candidates: Iterable[str], *,
                  valid: Callable[[str], bool] = is_valid_tag) -> Decision | None:
    """The single best tag to move ``current_tag`` to, or None.

    Never a downgrade, never the same tag (or the same version spelled differently), and the
    same answer whatever order the registry lists tags in. ``digest`` is handled by
    ``decide_digest``, so it yields None here, as does ``none``.
    """
    if spec.policy in (Policy.NONE, Policy.DIGEST):
        return None
    # Invalid tags are dropped: the result is written into a pod spec (or a chart version:
    # ``valid`` says which grammar applies).
    unique = {tag for tag in candidates if tag != current_tag and valid(tag)}
    if spec.policy.is_semver:
        best = _choose_semver(spec, current_tag, unique)
    else:
        best = _choose_ordered(spec, current_tag, unique)
    if best is None:
        return None
    return Decision(tag=best, reason=f"{_describe(spec)}: {current_tag} → {best}")


def decide_digest(
    current_digest: str | None, event_digest: str | None, *, tag: str
) -> Decision | None:
    """Digest policy: a Decision to re-pin ``tag`` when the registry's digest for it changed.

    Unknown digests (None) never trigger an update: without both we cannot tell a rebuild from
    a repeat. Malformed digests raise ValueError, because writing one would break the pod.
    """
    if current_digest is None or event_digest is None:
        return None
    for digest in (current_digest, event_digest):
        if not is_valid_digest(digest):
            raise ValueError(f"invalid digest {digest!r}")
    if current_digest == event_digest:
        return None
    return Decision(
        tag=tag,
        reason=(
            f"digest policy: {tag} was rebuilt "
            f"({short_digest(current_digest)} → {short_digest(event_digest)})"
        ),
        digest=event_digest,
    )


# --------------------------------------------------------------------------------------------
# Internals
# --------------------------------------------------------------------------------------------


def _known_digest(candidates: Mapping[str, str | None], tag: str) -> str | None:
    """The candidate's digest when it is a usable one; a malformed digest counts as unknown."""
    digest = candidates.get(tag)
    return digest if digest and is_valid_digest(digest) else None


def _choose_semver(spec: PolicySpec, current_tag: str, candidates: set[str]) -> str | None:
    """patch/minor/major/all: the highest newer version in scope.

    Candidates must spell as many numbers as the current tag: ``1.25`` is a floating tag that
    already receives patches, so it moves to ``1.26`` and not to ``1.25.3``, and a pinned
    ``1.2.3`` is never moved onto a floating ``1.4``.
    """
    current = parse_tag(current_tag)
    if current is None:
        return None
    cur = current.version
    admit_prerelease = spec.include_prerelease or (
        spec.semver_range is not None and spec.semver_range.names_prerelease
    )
    eligible: list[TagVersion] = []
    for tag in candidates:
        candidate = parse_tag(tag)
        if candidate is None or candidate.precision != current.precision:
            continue
        version = candidate.version
        if not version > cur:
            continue
        if spec.policy is Policy.PATCH and (version.major, version.minor) != (cur.major, cur.minor):
            continue
        if spec.policy is Policy.MINOR and version.major != cur.major:
            continue
        if version.prerelease and not admit_prerelease:
            continue
        if spec.semver_range is not None and not spec.semver_range.contains(
            version, include_prerelease=spec.include_prerelease
        ):
            continue
        eligible.append(candidate)
    if not eligible:
        return None
    # Equal versions (v1.3.0 / 1.3.0 / 1.3.0+b2): prefer the current spelling, then the string.
    best = max(eligible, key=lambda c: (c.version, c.prefixed == current.prefixed, c.tag))
    return best.tag


def _choose_ordered(spec: PolicySpec, current_tag: str, candidates: set[str]) -> str | None:
    """glob/regexp/force: versions compare as versions, other tags in natural order.

    Versions rank above non-version tags, so ``latest`` never "beats" ``1.2.3``. For glob and
    regexp a candidate must rank after the current tag; ``force`` accepts any other tag unless
    both are versions and the candidate is not newer. Pre-releases count as opted into when the
    current tag is one too, so ``*-alpine`` patterns (which parse as pre-releases) work.
    """
    matcher = _compile_matcher(spec.policy, spec.pattern) if spec.pattern else None
    if spec.policy in (Policy.GLOB, Policy.REGEXP) and matcher is None:
        return None
    current = parse_tag(current_tag)
    current_rank = _rank(current_tag, current)
    lenient = spec.include_prerelease or (current is not None and bool(current.version.prerelease))
    admit_prerelease = lenient or (
        spec.semver_range is not None and spec.semver_range.names_prerelease
    )
    best: tuple[Any, ...] | None = None
    best_tag: str | None = None
    for tag in candidates:
        if matcher is not None and not matcher.fullmatch(tag):
            continue
        candidate = parse_tag(tag)
        if candidate is not None:
            version = candidate.version
            if version.prerelease and not admit_prerelease:
                continue
            if spec.semver_range is not None and not spec.semver_range.contains(
                version, include_prerelease=lenient
            ):
                continue
        rank = _rank(tag, candidate)
        if current is not None and candidate is not None:
            if not candidate.version > current.version:
                continue
        elif spec.policy is not Policy.FORCE and not rank > current_rank:
            continue
        key = (rank, tag)
        if best is None or key > best:
            best, best_tag = key, tag
    return best_tag


def _rank(tag: str, parsed: TagVersion | None) -> tuple[Any, ...]:
    """Total order for glob/regexp/force: (1, version, natural) above (0, natural)."""
    natural = _natural_key(tag)
    if parsed is not None:
        return (1, parsed.version, natural)
    return (0, natural)


def _natural_key(tag: str) -> tuple[str | int, ...]:
    """``build-9`` < ``build-10``: digit runs compare as numbers (even slots str, odd int)."""
    parts = re.split(r"([0-9]+)", tag)
    return tuple(int(part) if index % 2 else part for index, part in enumerate(parts))


@functools.lru_cache(maxsize=256)
def _compile_matcher(policy: Policy, pattern: str) -> re.Pattern[str] | None:
    """The pattern as an anchored regex: glob ``*``/``?`` are the only wildcards."""
    if policy is Policy.REGEXP:
        return re.compile(pattern)
    if policy is Policy.GLOB:
        translated = "".join(
            ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
        )
        return re.compile(translated, re.DOTALL)
    return None


def _describe(spec: PolicySpec) -> str:
    text = f"{spec.policy.value} policy"
    details = []
    if spec.pattern and spec.policy in (Policy.GLOB, Policy.REGEXP):
        details.append(spec.pattern)
    if spec.semver_range is not None:
        details.append(f"range {spec.semver_range}")
    return f"{text} ({', '.join(details)})" if details else text


def _parse_bool(annotation: str, text: str | None, *, default: bool) -> bool:
    if text is None:
        return default
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise InvalidPolicy(annotation, text, "expected true or false")


def _parse_uint(annotation: str, text: str | None, *, default: int) -> int:
    """A non-negative whole number of seconds (or a count); range checks live in __post_init__."""
    if text is None:
        return default
    if not _UINT_RE.fullmatch(text):
        raise InvalidPolicy(annotation, text, "expected a whole number")
    return int(text)


def _parse_container_names(text: str | None) -> frozenset[str]:
    """Container names, not images: catching ``nginx:1.2`` here avoids a filter that never hits."""
    if text is None:
        return frozenset()
    names = frozenset(name.strip() for name in text.split(",") if name.strip())
    for name in names:
        if not _CONTAINER_NAME_RE.fullmatch(name):
            raise InvalidPolicy(
                ANNOTATION_IMAGES, text, f"{name!r} is not a container name (DNS-1123 label)"
            )
    return names
