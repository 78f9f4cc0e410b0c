"""The tag book: what Headwind has seen in each repository (registry/models.py).

Fed by what Headwind already learns, never by extra listing: the poller records each listing
(:func:`record_listing`: new tags, withdrawn ones, the check time), verified webhook pushes
record their tag (:func:`record_push`). Read by the radar and by the engine for
``headwind.sh/min-release-age`` (:func:`released`, :func:`facts`).

A tag's release time is the image config's ``created`` (fetched once per digest, only for what
a minimum release age needs; see registry/release_age.py), or a chart index's ``created``, and
when that is missing or implausible (the Unix epoch of reproducible builds, a time in the
future) the time Headwind first saw the tag.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q

from operator_app.core.radar import TagFacts

from .models import RepositoryCheck, SeenTag

log = logging.getLogger(__name__)

#: A created time before this is a placeholder (reproducible builds write 1970-01-01).
EARLIEST_PLAUSIBLE = datetime(2000, 1, 1, tzinfo=UTC)
#: A created time further in the future than this is not believed either.
FUTURE_TOLERANCE = timedelta(hours=1)
_BATCH = 500


def plausible(created: datetime | None, now: datetime | None = None) -> datetime | None:
    """``created`` when it can be a real release time, else None."""
    if created is None:
        return None
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    if created < EARLIEST_PLAUSIBLE or created > now + FUTURE_TOLERANCE:
        return None
    return created


def record_listing(repository: str, tags: Iterable[str], *, digests: Mapping[str, str] = {},
                   created: Mapping[str, datetime | None] = {}, source: str = "polling",
                   now: datetime | None = None) -> int:
    """A complete listing of ``repository``: new tags are recorded (first seen now), tags no
    longer listed are marked withdrawn, returning ones un-marked. Returns how many are new.
    A database that cannot take it now is logged, never raised (the poll still decides)."""
    now = now or datetime.now(UTC)
    listed = set(tags)
    try:
        with transaction.atomic():
            known = {row.tag: row for row in SeenTag.objects.filter(repository=repository)}
            fresh = [SeenTag(repository=repository, tag=tag, digest=digests.get(tag, ""),
                             source=source, first_seen=now,
                             created=plausible(created.get(tag), now),
                             created_checked=created.get(tag) is not None)
                     for tag in sorted(listed - set(known))]
            SeenTag.objects.bulk_create(fresh, batch_size=_BATCH, ignore_conflicts=True)
            withdrawn = [tag for tag, row in known.items() if tag not in listed and not row.gone]
            returned = [tag for tag, row in known.items() if tag in listed and row.gone]
            _update(repository, withdrawn, gone=now)
            _update(repository, returned, gone=None)
            for tag, digest in digests.items():
                row = known.get(tag)
                if row is not None and digest and row.digest != digest:
                    SeenTag.objects.filter(pk=row.pk).update(
                        digest=digest, created=None, created_checked=False)
            for tag, when in created.items():
                row = known.get(tag)
                if row is not None and not row.created_checked and when is not None:
                    SeenTag.objects.filter(pk=row.pk).update(
                        created=plausible(when, now), created_checked=True)
            _checked(repository, now)
    except DatabaseError as exc:
        log.warning("tag book: listing of %s not recorded: %s", repository, exc)
        return 0
    return len(fresh)


def record_push(repository: str, tag: str, digest: str | None, *, source: str = "webhook",
                now: datetime | None = None) -> None:
    """A pushed tag (a verified webhook event): first seen now unless already known; a new
    digest for a known tag (a rebuild) forgets its created time."""
    now = now or datetime.now(UTC)
    try:
        with transaction.atomic():
            row = SeenTag.objects.filter(repository=repository, tag=tag).first()
            if row is None:
                try:
                    with transaction.atomic():
                        SeenTag.objects.create(repository=repository, tag=tag,
                                               digest=digest or "", source=source,
                                               first_seen=now)
                except IntegrityError:
                    pass  # recorded meanwhile by another process
            else:
                changes: dict = {"gone": None}
                if digest and digest != row.digest:
                    changes.update(digest=digest, created=None, created_checked=False)
                SeenTag.objects.filter(pk=row.pk).update(**changes)
            _checked(repository, now)
    except DatabaseError as exc:
        log.warning("tag book: push %s:%s not recorded: %s", repository, tag, exc)


def record_created(repository: str, tag: str, created: datetime | None,
                   now: datetime | None = None) -> None:
    """The registry was asked for the tag's ``created``: remember the answer (even none)."""
    try:
        SeenTag.objects.filter(repository=repository, tag=tag).update(
            created=plausible(created, now), created_checked=True)
    except DatabaseError as exc:
        log.warning("tag book: created of %s:%s not recorded: %s", repository, tag, exc)


def unchecked(repository: str, tags: Iterable[str]) -> list[str]:
    """Of ``tags``, those whose ``created`` was never asked for."""
    wanted = list(tags)
    if not wanted:
        return []
    return list(SeenTag.objects.filter(repository=repository, tag__in=wanted,
                                       created_checked=False).values_list("tag", flat=True))


def released(repository: str) -> dict[str, datetime]:
    """Release time of every tag of ``repository`` still listed."""
    return {tag: created or first for tag, created, first in SeenTag.objects.filter(
        repository=repository, gone__isnull=True).values_list("tag", "created", "first_seen")}


def facts(repositories: Iterable[str]) -> dict[str, dict[str, TagFacts]]:
    """``{repository: {tag: TagFacts}}`` for the tags still listed."""
    found: dict[str, dict[str, TagFacts]] = defaultdict(dict)
    names = sorted(set(repositories))
    for start in range(0, len(names), _BATCH):
        rows = SeenTag.objects.filter(repository__in=names[start:start + _BATCH],
                                      gone__isnull=True).values_list(
            "repository", "tag", "digest", "created", "first_seen", "source")
        for repository, tag, digest, created, first, source in rows:
            found[repository][tag] = TagFacts(created or first, digest or None, source)
    return dict(found)


def checked_at(repositories: Iterable[str]) -> dict[str, datetime]:
    names = sorted(set(repositories))
    found = {}
    for start in range(0, len(names), _BATCH):
        found.update(RepositoryCheck.objects.filter(
            repository__in=names[start:start + _BATCH]).values_list("repository", "checked_at"))
    return found


def changed_since(moment: datetime) -> set[str]:
    """Repositories checked since ``moment`` (their tags may have changed)."""
    return set(RepositoryCheck.objects.filter(checked_at__gte=moment)
               .values_list("repository", flat=True))


def _update(repository: str, tags: list[str], **values) -> None:
    for start in range(0, len(tags), _BATCH):
        SeenTag.objects.filter(Q(repository=repository) & Q(tag__in=tags[start:start + _BATCH])
                               ).update(**values)


def _checked(repository: str, now: datetime) -> None:
    updated = RepositoryCheck.objects.filter(repository=repository).update(checked_at=now)
    if not updated:
        try:
            with transaction.atomic():
                RepositoryCheck.objects.create(repository=repository, checked_at=now)
        except IntegrityError:
            RepositoryCheck.objects.filter(repository=repository).update(checked_at=now)
