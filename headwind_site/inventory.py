"""The workload inventory and the update radar, run by the leading ``run_operator``.

:class:`Inventory` keeps the ``approvals.Workload`` table (one row per managed container or
chart) equal to the operator's informer caches, as the UpdateRequest mirror does for requests:
the dashboard and the API read the table, never the cluster. Cache changes are written within
``flush`` seconds, in batches; on becoming leader it reconciles the whole table.

Every ``HEADWIND_RADAR_INTERVAL`` seconds it runs the **radar** (operator_app/core/radar.py)
over the slots whose workload or repository changed since the last pass (and all of them every
``full_every`` seconds): from the tags the tag book already holds (registry/tagbook.py, fed by
polling and webhooks; no registry request of its own) it writes each slot's newest allowed and
newest version, how far behind it is, how old its version is and, for
``headwind.sh/min-release-age``, until when a candidate waits. A candidate that has become old
enough is offered to the engine again, as the push it once was (through the same verification),
so it is applied without a new push; a version withdrawn from the registry meanwhile is gone
from the tag book, and its offer is refused by verification.

Metrics (leader only; label cardinality bounded by :data:`SERIES_LIMIT` per metric):
``headwind_versions_behind{namespace,kind,name,container,scope}`` for slots that are behind,
``headwind_running_version_age_seconds{namespace,kind,name,container}``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

from django.conf import settings
from django.db import DatabaseError, close_old_connections, transaction
from prometheus_client import Counter, Gauge

from approvals.models import Workload
from operator_app.cache import WorkloadCache
from operator_app.core.events import EventSource, ImagePushEvent
from operator_app.core.policy import InvalidPolicy, PolicySpec
from operator_app.core.radar import Radar, TagFacts, survey
from operator_app.proposals import parse_rfc3339
from operator_app.workloads import WorkloadProjection, parse_artifact
from registry import tagbook

log = logging.getLogger(__name__)

Key = tuple[str, str, str]
Slot = tuple[Key, str]

#: Most series per radar metric; beyond it slots are left out (and counted).
SERIES_LIMIT = 5000
_BATCH = 500
_MIRRORED = ("uid", "current", "repository", "policy", "trigger", "require_approval",
             "annotations", "last_update_at", "last_from", "last_to", "last_by",
             "rollout_state", "held", "scheduled_for")
_RADAR = ("newest_allowed", "newest_any", "behind_policy", "behind_any", "running_released",
          "waiting_until", "checked_at", "radar_at")

VERSIONS_BEHIND = Gauge(
    "headwind_versions_behind",
    "Releases newer than the running one: scope=policy those the policy accepts, scope=any "
    "of any kind (majors and pre-releases too). Only slots behind in some scope.",
    ["namespace", "kind", "name", "container", "scope"])
RUNNING_AGE = Gauge(
    "headwind_running_version_age_seconds",
    "Age of the running version (image config created, or when Headwind first saw the tag).",
    ["namespace", "kind", "name", "container"])
SERIES_DROPPED = Counter(
    "headwind_radar_series_dropped_total",
    "Radar series not exported because HEADWIND_RADAR_SERIES_LIMIT was reached.")


class Inventory(threading.Thread):
    def __init__(self, cache: WorkloadCache, stop: threading.Event,
                 is_leader: Callable[[], bool], offer: Callable[[ImagePushEvent], None], *,
                 interval: float | None = None, flush: float = 0.5,
                 full_every: float = 600.0) -> None:
        super().__init__(name="inventory", daemon=True)
        self.cache = cache
        self.stop_event = stop
        self.is_leader = is_leader
        self.offer = offer
        self.interval = interval if interval is not None else settings.HEADWIND.radar_interval
        self.flush_seconds = flush
        self.full_every = full_every
        self._lock = threading.Lock()
        self._dirty: set[Key] = set()
        self._radar_dirty: set[Key] = set()
        self._wake = threading.Event()
        self._leading = False
        self._next_radar = 0.0
        self._next_full = 0.0
        self._last_pass: datetime | None = None
        self._waiting: dict[Slot, datetime] = {}
        self._offered: set[tuple[Slot, str]] = set()
        self._exported: dict[Slot, tuple] = {}
        self.passes = 0  # radar passes done (tests wait on it)
        cache.subscribe(self._changed)

    def _changed(self, key: Key) -> None:
        with self._lock:
            self._dirty.add(key)
            self._radar_dirty.add(key)
        self._wake.set()

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> None:
        while not self.stop_event.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if self.stop_event.is_set():
                return
            leading = self.is_leader()
            if not leading:
                self._leading = False
                continue
            try:
                if not self._leading:
                    self.reconcile()
                    self._leading = True
                else:
                    self.flush()
                if time.monotonic() >= self._next_radar:
                    self.radar_pass()
            except DatabaseError as exc:
                log.warning("inventory: database busy (%s); trying again", exc)
            except Exception:  # noqa: BLE001 - the inventory must outlive one bad pass
                log.exception("inventory pass failed")
            finally:
                close_old_connections()

    # -- the mirror ----------------------------------------------------------------------------

    def reconcile(self) -> None:
        """The whole table from the cache: rows for every slot, none for anything else."""
        with self._lock:  # before the snapshot: a change from now on is flushed again
            self._dirty.clear()
        items = self.cache.snapshot()
        # Rows are checked against the snapshot's workloads by key (the projections' own key
        # tuples): a set of every (kind, namespace, name, container) was 4 MB at 10,000.
        by_key = {w.key: w for w in items}
        stale = [pk for pk, kind, namespace, name, container in Workload.objects.values_list(
            "pk", "kind", "namespace", "name", "container").iterator(chunk_size=2000)
            if not _has_slot(by_key.get((kind, namespace, name)), container)]
        for start in range(0, len(stale), _BATCH):
            Workload.objects.filter(pk__in=stale[start:start + _BATCH]).delete()
        self._write(items)
        with self._lock:
            self._radar_dirty.update(w.key for w in items)
        self._next_radar = 0.0
        self._next_full = time.monotonic() + self.full_every
        log.info("inventory: %d workloads, %d managed containers and charts", len(items),
                 sum(len({c.name for c in w.containers}) for w in by_key.values()))

    def flush(self) -> int:
        with self._lock:
            keys, self._dirty = self._dirty, set()
        if not keys:
            return 0
        present = [w for w in (self.cache.get(key) for key in keys) if w is not None]
        self._write(present)
        keys = list(keys)
        for start in range(0, len(keys), _BATCH):
            self._delete_vanished(keys[start:start + _BATCH])
        return len(keys)

    def _delete_vanished(self, keys: list[Key]) -> None:
        """Rows of these workloads whose container (or the workload) is gone: one query to
        find them for the whole batch, one to delete them (not one per workload)."""
        wanted = {}
        for key in keys:
            workload = self.cache.get(key)
            wanted[key] = {c.name for c in workload.containers} if workload is not None else set()
        found = Workload.objects.filter(
            kind__in={k for k, _, _ in keys}, namespace__in={n for _, n, _ in keys},
            name__in={m for _, _, m in keys}).values_list("pk", "kind", "namespace", "name",
                                                          "container")
        stale = [pk for pk, kind, namespace, name, container in found
                 if (kind, namespace, name) in wanted
                 and container not in wanted[(kind, namespace, name)]]
        if stale:
            Workload.objects.filter(pk__in=stale).delete()

    def _write(self, items: Iterable[WorkloadProjection]) -> None:
        """Upsert the rows of ``items``, a batch at a time: with 10,000 workloads the model
        instances of all of them at once would be the operator's largest peak of memory."""
        batch: list[Workload] = []
        for workload in items:
            batch.extend(_rows(workload))
            if len(batch) >= _BATCH:
                _upsert(batch)
                batch = []
        if batch:
            _upsert(batch)

    # -- the radar -----------------------------------------------------------------------------

    def radar_pass(self, now: datetime | None = None) -> int:
        """One pass; returns how many slots were surveyed.

        The slots are read, surveyed and stored :data:`_BATCH` at a time: the first pass over
        10,000 workloads once held every slot's parsed reference, tags and result at the same
        time, and the memory it left behind was a tenth of the operator's."""
        now = now or datetime.now(UTC)
        started = time.monotonic()
        self._next_radar = started + self.interval
        full = started >= self._next_full
        if full:
            self._next_full = started + self.full_every
        items = self.cache.snapshot()
        changed = tagbook.changed_since(self._last_pass) if self._last_pass and not full else None
        with self._lock:
            dirty, self._radar_dirty = self._radar_dirty, set()
        due = {slot for slot, when in self._waiting.items() if when <= now}
        self._last_pass = now
        surveyed = 0
        batch: list = []
        for workload, container, ref in _slots(items):
            if (full or changed is None or workload.key in dirty
                    or ref.repository in changed or (workload.key, container.name) in due):
                batch.append((workload, container, ref))
                if len(batch) >= _BATCH:
                    self._survey(batch, now)
                    surveyed += len(batch)
                    batch = []
        if batch:
            self._survey(batch, now)
            surveyed += len(batch)
        if surveyed:
            self._forget_gone()
        self.passes += 1
        if surveyed:
            log.debug("radar: %d slots in %.0f ms", surveyed, (time.monotonic() - started) * 1e3)
        return surveyed

    def _survey(self, chosen: list, now: datetime) -> None:
        """Survey, follow up, export and store these slots."""
        known = tagbook.facts(ref.repository for _, _, ref in chosen)
        checked = tagbook.checked_at(ref.repository for _, _, ref in chosen)
        updates = []
        memo: dict[tuple, Radar] = {}
        for workload, container, ref in chosen:
            spec = _spec(workload)
            if spec is None:
                continue
            tags = known.get(ref.repository, {})
            memo_key = (ref.repository, workload.annotations, str(ref), container.name)
            result = memo.get(memo_key)
            if result is None:
                result = memo[memo_key] = survey(spec, ref, tags, slot=container.name, now=now)
            slot = (workload.key, container.name)
            self._follow_up(slot, workload, spec, ref, result, tags, now)
            self._export(slot, workload, container.name, result, now)
            updates.append((workload, container.name, result, checked.get(ref.repository)))
        if updates:
            self._store_batch(updates, now)

    def _follow_up(self, slot: Slot, workload: WorkloadProjection, spec: PolicySpec, ref,
                   result: Radar, tags: dict[str, TagFacts], now: datetime) -> None:
        """Release age: remember when a held-back candidate is due; offer one that is."""
        if result.waiting_until is not None:
            self._waiting[slot] = result.waiting_until
        else:
            self._waiting.pop(slot, None)
        eligible = result.eligible
        if (not spec.min_release_age_seconds or eligible is None
                or eligible == ref.effective_tag or (slot, eligible) in self._offered):
            return
        self._offered.add((slot, eligible))
        facts = tags.get(eligible) or TagFacts()
        source = EventSource.POLLING if facts.source == "polling" else EventSource.WEBHOOK
        log.info("%s %s/%s %s: %s is old enough now (headwind.sh/min-release-age); offered",
                 workload.kind, workload.namespace, workload.name, slot[1], eligible)
        self.offer(ImagePushEvent(ref.repository, eligible, facts.digest, source, time.time()))

    def _export(self, slot: Slot, workload: WorkloadProjection, container: str, result: Radar,
                now: datetime) -> None:
        labels = (workload.namespace, workload.kind, workload.name, container)
        limit = settings.HEADWIND.radar_series_limit
        previous = self._exported.get(slot)
        if previous is None and len(self._exported) >= limit:
            SERIES_DROPPED.inc()
            return
        self._exported[slot] = labels
        behind = (result.behind_policy or 0, result.behind_any or 0)
        if any(behind):
            VERSIONS_BEHIND.labels(*labels, "policy").set(behind[0])
            VERSIONS_BEHIND.labels(*labels, "any").set(behind[1])
        else:
            for scope in ("policy", "any"):
                _remove(VERSIONS_BEHIND, *labels, scope)
        if result.running_released is not None:
            RUNNING_AGE.labels(*labels).set(max(0.0, (now - result.running_released)
                                                .total_seconds()))

    def forget_exports(self, keep: set[Slot]) -> None:
        for slot in [s for s in self._exported if s not in keep]:
            labels = self._exported.pop(slot)
            for scope in ("policy", "any"):
                _remove(VERSIONS_BEHIND, *labels, scope)
            _remove(RUNNING_AGE, *labels)

    def _forget_gone(self) -> None:
        """Forget the series of exported slots that are gone from the cache (or whose reference
        no longer reads): the exported slots are looked up, the cache is not walked."""
        keep = set()
        for slot in self._exported:
            workload = self.cache.get(slot[0])
            for container in workload.containers if workload is not None else ():
                if container.name == slot[1] and _readable(workload.kind, container.image):
                    keep.add(slot)
                    break
        self.forget_exports(keep)

    def _store_batch(self, updates: list, now: datetime) -> None:
        """The radar's columns of these slots. Rows that get the same values (the common case:
        nothing newer, checked at the same time) share one UPDATE; Django's bulk_update builds
        a CASE per row and column, which took seconds of CPU for 10,000 rows."""
        by_slot = {(w.kind, w.namespace, w.name, c): (r, checked) for w, c, r, checked in updates}
        names = {(w.kind, w.namespace, w.name) for w, *_ in updates}
        groups: dict[tuple, list[int]] = {}
        for pk, *slot in Workload.objects.filter(
                kind__in={k for k, _, _ in names}, namespace__in={n for _, n, _ in names},
                name__in={m for _, _, m in names}).values_list(
                "pk", "kind", "namespace", "name", "container"):
            found = by_slot.get(tuple(slot))
            if found is None:
                continue
            result, checked = found
            values = (result.newest_allowed or "", result.newest_any or "",
                      result.behind_policy, result.behind_any, result.running_released,
                      result.waiting_until, checked, now)
            groups.setdefault(values, []).append(pk)
        with transaction.atomic():
            for values, pks in groups.items():
                Workload.objects.filter(pk__in=pks).update(**dict(zip(_RADAR, values, strict=True)))


def _upsert(rows: list[Workload]) -> None:
    with transaction.atomic():
        Workload.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=["kind", "namespace", "name", "container"],
            update_fields=list(_MIRRORED))


def _remove(gauge, *labels) -> None:
    try:
        gauge.remove(*labels)
    except KeyError:
        pass


def _spec(workload: WorkloadProjection) -> PolicySpec | None:
    try:
        return PolicySpec.from_annotations(workload.annotation_map)
    except InvalidPolicy:
        return None


def _slots(items: Iterable[WorkloadProjection]) -> Iterator[tuple]:
    """(workload, slot, parsed reference) of every slot whose reference reads, one at a time."""
    for workload in items:
        for container in workload.containers:
            try:
                ref = parse_artifact(workload.kind, container.image)
            except ValueError:
                continue
            yield workload, container, ref


def _has_slot(workload: WorkloadProjection | None, slot: str) -> bool:
    return workload is not None and any(c.name == slot for c in workload.containers)


def _readable(kind: str, reference: str) -> bool:
    try:
        parse_artifact(kind, reference)
    except ValueError:
        return False
    return True


def _rows(workload: WorkloadProjection) -> list[Workload]:
    annotations = workload.annotation_map
    try:
        spec = PolicySpec.from_annotations(annotations)
        policy, trigger, approval = (spec.policy.value, spec.event_source.value,
                                     spec.require_approval)
        held = spec.held
    except InvalidPolicy:
        policy, trigger, approval, held = "invalid", "", True, frozenset()
    changes = {slot: (at, old, new, by) for slot, at, old, new, by in workload.last_changes}
    states = dict(workload.rollout_states)
    scheduled = _scheduled(annotations)
    rows = []
    for container in workload.containers:
        try:
            repository = parse_artifact(workload.kind, container.image).repository
        except ValueError:
            repository = ""
        at, old, new, by = changes.get(container.name, ("", "", "", ""))
        rows.append(Workload(
            kind=workload.kind, namespace=workload.namespace, name=workload.name,
            container=container.name, uid=workload.uid, current=container.image[:1024],
            repository=repository[:512], policy=policy, trigger=trigger,
            require_approval=approval, annotations=annotations,
            last_update_at=parse_rfc3339(at), last_from=old[:1024], last_to=new[:1024],
            last_by=by[:253], rollout_state=states.get(container.name, ""),
            held=container.name in held, scheduled_for=scheduled.get(container.name)))
    return rows


def _scheduled(annotations: dict) -> dict[str, datetime | None]:
    """``headwind.sh/scheduled``: updates waiting for a maintenance window, per slot."""
    try:
        values = json.loads(annotations.get("headwind.sh/scheduled") or "{}")
    except ValueError:
        return {}
    if not isinstance(values, dict):
        return {}
    return {slot: parse_rfc3339(entry.get("at")) for slot, entry in values.items()
            if isinstance(entry, dict)}
