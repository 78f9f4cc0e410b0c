"""The update radar, pure: how far behind one container (or chart) is, from the tags Headwind
already knows for its repository (polled lists, webhook pushes). It asks the same
:func:`~operator_app.core.policy.decide` as every update, so the radar never disagrees with
what Headwind would do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from operator_app.core.charts import ChartRef
from operator_app.core.images import ImageRef
from operator_app.core.policy import Policy, PolicySpec, decide
from operator_app.core.versions import parse_tag


@dataclass(frozen=True)
class TagFacts:
    """What is known of one tag: when it was released (the image config's ``created``, or when
    Headwind first saw the tag when that is missing or implausible) and its digest."""

    released: datetime | None = None
    digest: str | None = None
    #: How Headwind first learned of it: "webhook" or "polling".
    source: str = ""


@dataclass(frozen=True)
class Radar:
    #: The version the policy would move to, release age aside.
    newest_allowed: str | None
    #: The newest version of any kind, majors and pre-releases included.
    newest_any: str | None
    #: Releases newer than the running one that the policy accepts / of any kind.
    behind_policy: int
    behind_any: int
    #: When the running version was released (its age).
    running_released: datetime | None
    #: The version the policy would apply now (release age considered).
    eligible: str | None
    #: When ``newest_allowed`` becomes old enough (``headwind.sh/min-release-age``).
    waiting_until: datetime | None


def survey(spec: PolicySpec, current: ImageRef | ChartRef, tags: Mapping[str, TagFacts], *,
           slot: str, now: datetime) -> Radar:
    current_tag = current.effective_tag or ""
    candidates = {tag: facts.digest for tag, facts in tags.items()}
    released = {tag: facts.released for tag, facts in tags.items() if facts.released}
    allowed = decide(spec, current, candidates, slot=slot)
    eligible = (decide(spec, current, candidates, slot=slot, released=released, now=now)
                if spec.min_release_age_seconds else allowed)
    waiting = None
    if allowed is not None and (eligible is None or eligible.tag != allowed.tag):
        when = released.get(allowed.tag)  # too young; unknown age: no time to promise
        waiting = when + timedelta(seconds=spec.min_release_age_seconds) if when else None
    running = tags.get(current_tag)
    newest_any, behind_any = _newest(current_tag, tags)
    return Radar(
        newest_allowed=allowed.tag if allowed else None,
        newest_any=newest_any,
        behind_policy=_behind_policy(spec, current, candidates, slot, allowed is not None),
        behind_any=behind_any,
        running_released=running.released if running else None,
        eligible=eligible.tag if eligible else None,
        waiting_until=waiting,
    )


def _newest(current_tag: str, tags: Mapping[str, TagFacts]) -> tuple[str | None, int]:
    """The highest version among the tags and how many distinct versions are above the
    running one (tags that are no version, such as ``latest``, are left out)."""
    running = parse_tag(current_tag)
    versions = {}
    for tag in tags:
        parsed = parse_tag(tag)
        if parsed is not None:
            versions.setdefault(parsed.version, tag)
    if not versions:
        return None, 0
    newest = versions[max(versions)]
    above = sum(1 for version in versions if running is not None and version > running.version)
    return newest, above


def _behind_policy(spec: PolicySpec, current: ImageRef | ChartRef,
                   candidates: Mapping[str, str | None], slot: str, moves: bool) -> int:
    """How many releases the policy would accept, each on its own, from where it runs now."""
    if not moves:
        return 0
    if spec.policy is Policy.DIGEST:
        return 1
    return sum(1 for tag, digest in candidates.items()
               if (choice := decide(spec, current, {tag: digest}, slot=slot)) is not None
               and choice.tag == tag)
