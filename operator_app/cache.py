"""Informer-style caches of opted-in workloads and the repository index built from them.

Each kind is listed once, then watched from the list's resourceVersion with bookmarks; a 410
(history compacted) re-lists and diffs, a broken connection resumes from the last version after a
backoff. Only small projections are kept, and an index from normalised repository to
(workload, container) makes one image event cost O(matches), not O(workloads).
"""

from __future__ import annotations

import logging
import random
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace

from . import kube, metrics
from .workloads import ContainerImage, TargetKind, WorkloadProjection, parse_artifact, project

log = logging.getLogger(__name__)

Key = tuple[str, str, str]
#: One workload's slot in the repository index: (workload key, slot name).
Entry = tuple[Key, str]
#: Most entries a repository keeps in a tuple before they move to a set.
_FEW = 8


class WorkloadCache:
    """Thread-safe store of projections plus the repository index."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Key], None]] = []
        self._items: dict[Key, WorkloadProjection] = {}
        #: repository -> its (workload key, slot) entries: the entry itself when there is one
        #: (most repositories), a tuple while there are a few, a set beyond :data:`_FEW`.
        #: 10,000 one-element sets and the tuples to find them again were a fifth of the
        #: operator's memory.
        self._index: dict[str, Entry | tuple[Entry, ...] | set[Entry]] = {}
        self._counts: dict[str, int] = defaultdict(int)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Key) -> WorkloadProjection | None:
        return self._items.get(key)

    def snapshot(self) -> list[WorkloadProjection]:
        with self._lock:
            return list(self._items.values())

    def count(self, kind: str) -> int:
        return self._counts[kind]

    def subscribe(self, listener: Callable[[Key], None]) -> None:
        """``listener(key)`` after every change of that workload (added, changed, removed)."""
        self._listeners.append(listener)

    def _changed(self, key: Key) -> None:
        for listener in self._listeners:
            try:
                listener(key)
            except Exception:  # noqa: BLE001 - a listener must not break the cache
                log.exception("cache listener failed")

    def upsert(self, item: WorkloadProjection) -> None:
        previous = self._items.get(item.key)
        self._upsert(item)
        if previous is None or replace(item, resource_version=previous.resource_version) \
                != previous:  # a status-only change (a new resourceVersion) is no change here
            self._changed(item.key)

    def _upsert(self, item: WorkloadProjection) -> None:
        key = item.key
        with self._lock:
            self._drop(key)
            self._items[key] = item
            self._counts[item.kind] += 1
            for container in item.containers:
                repository = _repository(item.kind, container)
                if repository:
                    self._add(repository, (key, container.name))

    def _add(self, repository: str, entry: Entry) -> None:
        entries = self._index.get(repository)
        if entries is None:
            self._index[repository] = entry
        elif isinstance(entries, set):
            entries.add(entry)
        else:
            entries = _entries(entries)
            if entry not in entries:
                self._index[repository] = ((*entries, entry) if len(entries) < _FEW
                                           else {*entries, entry})

    def remove(self, key: Key) -> None:
        with self._lock:
            present = key in self._items
            self._drop(key)
        if present:
            self._changed(key)

    def replace_kind(self, kind: str, items: Iterable[WorkloadProjection]) -> None:
        """After a (re-)list: the listed set becomes the truth for this kind."""
        fresh = {item.key: item for item in items}
        for key in [k for k in list(self._items) if k[0] == kind and k not in fresh]:
            self.remove(key)
        for item in fresh.values():
            current = self._items.get(item.key)
            if current is None or current.resource_version != item.resource_version:
                self.upsert(item)

    def matches(self, repository: str) -> list[tuple[WorkloadProjection, ContainerImage]]:
        with self._lock:
            found = []
            for key, container_name in _entries(self._index.get(repository, ())):
                item = self._items[key]
                for container in item.containers:
                    if container.name == container_name:
                        found.append((item, container))
            return found

    def _drop(self, key: Key) -> None:
        """Forget ``key`` and its index entries (found again from its slots' references, which
        is what indexed them)."""
        item = self._items.pop(key, None)
        if item is None:
            return
        self._counts[key[0]] -= 1
        for container in item.containers:
            repository = _repository(item.kind, container, quiet=True)
            entries = self._index.get(repository) if repository else None
            if entries is None:
                continue
            entry = (key, container.name)
            if isinstance(entries, set):
                entries.discard(entry)
            else:
                entries = tuple(e for e in _entries(entries) if e != entry)
                self._index[repository] = entries[0] if len(entries) == 1 else entries
            if not entries:
                del self._index[repository]


def _entries(found):
    """A repository's entries as a tuple or set: one entry is kept bare, not in a 1-tuple."""
    if isinstance(found, set) or not found or not isinstance(found[0][0], str):
        return found  # a set, a tuple of entries (their first item is a key), or nothing
    return (found,)  # one entry: its first item is the key, whose first item is the kind


def _repository(kind: str, container: ContainerImage, quiet: bool = False) -> str | None:
    try:
        return parse_artifact(kind, container.image).repository
    except ValueError:
        if not quiet:
            log.warning("%s slot %s has an unparseable reference %r; not indexed", kind,
                        container.name, container.image)
        return None


class Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): re-list."""


class ListWatcher(threading.Thread):
    """List a collection, then watch it from the list's resourceVersion, for ever.

    Subclasses say what a listing and a change mean (:meth:`replace`, :meth:`apply_event`);
    this class owns bookmarks, 410 re-lists and reconnect backoff, for workloads and the
    UpdateRequest mirror alike.
    """

    #: Objects per list request. Each page is parsed whole into dicts while the projections that
    #: stay are made: at 500 the operator kept ~10 MB more at 10,000 Deployments (the pages' holes
    #: among the projections); 100 costs a few more requests.
    page_size = 100
    watch_timeout = 290  # server-side; the client read timeout is a little longer
    #: An API that may not be installed (Flux's): a 404 or 403 on the listing means "nothing
    #: to watch yet", not a failure; it is looked for again every ``absent_retry`` seconds.
    optional = False
    absent_retry = 60.0

    def __init__(self, api, path: str, label: str, stop: threading.Event) -> None:
        super().__init__(name=f"watch-{label}", daemon=True)
        self.api = api
        self.path = path
        self.label = label
        self.stop_event = stop
        self.synced = threading.Event()
        self.resource_version = ""

    def replace(self, objects: Iterator[dict]) -> None:
        raise NotImplementedError

    def apply_event(self, event_type: str, obj: dict) -> None:
        raise NotImplementedError

    def run(self) -> None:
        backoff = 0.5
        need_list = True
        while not self.stop_event.is_set():
            try:
                if need_list:
                    self.list()
                    need_list = False
                self.watch()
                backoff = 0.5
            except Expired:
                metrics.WATCH_RESTARTS.labels(self.label, "expired").inc()
                log.info("%s watch expired; re-listing", self.label)
                need_list = True
            except kube.KubeError as exc:
                if self.optional and need_list and exc.status in (403, 404):
                    self._absent(exc)
                    continue
                metrics.WATCH_RESTARTS.labels(self.label, "error").inc()
                if exc.status == 410:
                    need_list = True
                    continue
                backoff = self._pause(backoff, str(exc))
            except Exception:  # noqa: BLE001 - a dead watcher would silently stop all updates
                log.exception("%s watcher failed unexpectedly; re-listing", self.label)
                metrics.WATCH_RESTARTS.labels(self.label, "error").inc()
                need_list = True
                backoff = self._pause(backoff, "unexpected error")

    def _absent(self, exc: kube.KubeError) -> None:
        if not self.synced.is_set():
            log.info("%s: not served here, or not readable (%s); nothing to watch, looking "
                     "again every %.0fs", self.label, exc.status, self.absent_retry)
            self.replace(iter(()))
            self.synced.set()
        self.stop_event.wait(self.absent_retry)

    def _pause(self, backoff: float, why: str) -> float:
        delay = backoff * (1 + random.random() / 2)
        log.warning("%s watch failed (%s); retrying in %.1fs", self.label, why, delay)
        self.stop_event.wait(delay)
        return min(backoff * 2, 30)

    def list(self) -> None:
        """Page through the collection; the subclass consumes objects as they arrive."""
        def pages() -> Iterator[dict]:
            token = None
            while True:
                page = kube.request(self.api, "GET", self.path,
                                    query={"limit": self.page_size, "continue": token},
                                    timeout=60)
                for obj in page.get("items") or []:
                    obj.setdefault("metadata", {})
                    yield obj
                token = (page.get("metadata") or {}).get("continue")
                if not token:
                    self.resource_version = page["metadata"]["resourceVersion"]
                    return

        self.replace(pages())
        self.synced.set()

    def watch(self) -> None:
        query = {"watch": "true", "resourceVersion": self.resource_version,
                 "allowWatchBookmarks": "true", "timeoutSeconds": self.watch_timeout}
        for event in kube.stream(self.api, self.path, query, read_timeout=self.watch_timeout + 30):
            if self.stop_event.is_set():
                return
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise Expired()
                raise kube.KubeError(obj.get("code", 0), obj.get("reason", ""),
                                     obj.get("message", ""))
            self.resource_version = (obj.get("metadata") or {}).get("resourceVersion",
                                                                    self.resource_version)
            if kind == "BOOKMARK":
                continue
            self.apply_event(kind, obj)


#: Told of every object an informer lists or sees change: (kind, event type, whole object).
Observer = Callable[[TargetKind, str, dict], None]


class Informer(ListWatcher):
    """Keeps one workload kind's opted-in objects in the cache, and shows every object it sees
    to the ``observers`` (the rollout watcher reads status the cache does not keep)."""

    def __init__(self, api, kind: TargetKind, cache: WorkloadCache,
                 stop: threading.Event, observers: Iterable[Observer] = ()) -> None:
        super().__init__(api, kind.collection_path(), kind.kind, stop)
        self.kind = kind
        self.cache = cache
        self.observers = tuple(observers)

    def project(self, obj: dict) -> WorkloadProjection | None:
        return project(self.kind, obj)

    def _observed(self, event_type: str, obj: dict) -> dict:
        for observer in self.observers:
            try:
                observer(self.kind, event_type, obj)
            except Exception:  # noqa: BLE001 - an observer must not break the cache
                log.exception("%s observer failed", self.label)
        return obj

    def replace(self, objects: Iterator[dict]) -> None:
        items = [p for p in (self.project(self._observed("ADDED", obj)) for obj in objects)
                 if p is not None]
        self.cache.replace_kind(self.kind.kind, items)
        metrics.WATCHED.labels(self.kind.kind).set(self.cache.count(self.kind.kind))
        log.info("%s: %d opted-in workloads listed", self.kind.kind, len(items))

    def apply_event(self, event_type: str, obj: dict) -> None:
        self._observed(event_type, obj)
        meta = obj.get("metadata") or {}
        key = (self.kind.kind, meta.get("namespace", ""), meta.get("name", ""))
        projection = self.project(obj) if event_type != "DELETED" else None
        if projection is None:
            self.cache.remove(key)
        else:
            self.cache.upsert(projection)
        metrics.WATCHED.labels(self.kind.kind).set(self.cache.count(self.kind.kind))


class SourceCache(ListWatcher):
    """Flux chart sources (HelmRepository, OCIRepository) by (kind, namespace, name), for
    resolving HelmReleases; tells ``on_change`` which source changed."""

    optional = True

    def __init__(self, api, kind: TargetKind, stop: threading.Event,
                 on_change: Callable[[tuple[str, str, str]], None] = lambda key: None) -> None:
        super().__init__(api, kind.collection_path(), kind.kind, stop)
        self.kind = kind
        self.on_change = on_change
        self._lock = threading.Lock()
        self._items: dict[tuple[str, str, str], dict] = {}

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        with self._lock:
            return self._items.get((kind, namespace, name))

    def _key(self, obj: dict) -> tuple[str, str, str]:
        meta = obj.get("metadata") or {}
        return (self.kind.kind, meta.get("namespace", ""), meta.get("name", ""))

    @staticmethod
    def _small(obj: dict) -> dict:
        """What resolving a chart needs: metadata (name, namespace, resourceVersion) and spec."""
        meta = obj.get("metadata") or {}
        return {"metadata": {k: meta.get(k) for k in ("name", "namespace", "resourceVersion",
                                                       "uid")},
                "spec": obj.get("spec") or {}}

    def replace(self, objects: Iterator[dict]) -> None:
        fresh = {self._key(obj): self._small(obj) for obj in objects}
        with self._lock:
            changed = {k for k in set(fresh) | set(self._items)
                       if fresh.get(k) != self._items.get(k)}
            self._items = fresh
        for key in changed:
            self.on_change(key)

    def apply_event(self, event_type: str, obj: dict) -> None:
        key = self._key(obj)
        with self._lock:
            if event_type == "DELETED":
                self._items.pop(key, None)
            else:
                self._items[key] = self._small(obj)
        self.on_change(key)


class HelmReleaseInformer(Informer):
    """Opted-in HelmReleases, their chart resolved through the source caches.

    A HelmRelease whose source changes (a new URL, a moved OCIRepository tag) is projected
    again. One whose version is a range is left alone, said once in a log line and an Event.
    """

    optional = True

    def __init__(self, api, kind: TargetKind, cache: WorkloadCache, stop: threading.Event,
                 sources: Callable[[str, str, str], dict | None],
                 report: Callable[[dict, str], None] = lambda obj, why: None,
                 observers: Iterable[Observer] = ()) -> None:
        super().__init__(api, kind, cache, stop, observers)
        self.sources = sources
        self.report = report
        self._lock = threading.Lock()
        self._objects: dict[Key, dict] = {}  # opted-in HelmReleases, metadata + spec only
        self._told: set[tuple[str, str]] = set()
        self._followed: set[tuple[Key, str]] = set()

    def project(self, obj: dict) -> WorkloadProjection | None:
        projection = project(self.kind, obj, self.sources)
        if projection is not None and projection.containers:
            followed = (projection.key, projection.containers[0].image)
            if followed not in self._followed:
                self._followed.add(followed)
                log.info("HelmRelease %s/%s follows %s", projection.namespace, projection.name,
                         projection.containers[0].image)
        if projection is not None:
            found = self.kind.source(obj, self.sources)  # type: ignore[attr-defined]
            why = found.unfollowed if found is not None else ""
            meta = obj.get("metadata") or {}
            told = (meta.get("uid", ""), why)
            if why and told not in self._told:
                self._told.add(told)
                log.info("HelmRelease %s/%s left alone: %s", meta.get("namespace"),
                         meta.get("name"), why)
                self.report(obj, why)
        return projection

    def replace(self, objects: Iterator[dict]) -> None:
        kept = [obj for obj in objects
                if "headwind.sh/policy" in ((obj.get("metadata") or {}).get("annotations") or {})]
        with self._lock:
            self._objects = {self._key_of(obj): _release_small(obj) for obj in kept}
        super().replace(iter(kept))
        self.replace_done()

    def apply_event(self, event_type: str, obj: dict) -> None:
        key = self._key_of(obj)
        opted_in = "headwind.sh/policy" in ((obj.get("metadata") or {}).get("annotations") or {})
        with self._lock:
            if event_type == "DELETED" or not opted_in:
                self._objects.pop(key, None)
            else:
                self._objects[key] = _release_small(obj)
        super().apply_event(event_type, obj)
        self.replace_done()

    def replace_done(self) -> None:
        metrics.HELM_RELEASES_WATCHED.set(self.cache.count(self.kind.kind))

    def source_changed(self, source: tuple[str, str, str]) -> None:
        """Project again every HelmRelease that names ``source``."""
        kind, namespace, name = source
        with self._lock:
            dependents = [obj for obj in self._objects.values()
                          if _names_source(obj, kind, namespace, name)]
        for obj in dependents:
            projection = self.project(obj)
            key = self._key_of(obj)
            if projection is None:
                self.cache.remove(key)
            else:
                self.cache.upsert(projection)
        self.replace_done()

    def _key_of(self, obj: dict) -> Key:
        meta = obj.get("metadata") or {}
        return (self.kind.kind, meta.get("namespace", ""), meta.get("name", ""))


def _release_small(obj: dict) -> dict:
    meta = obj.get("metadata") or {}
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
            "metadata": {k: meta.get(k) for k in ("name", "namespace", "uid", "resourceVersion",
                                                   "annotations")},
            "spec": {k: v for k, v in (obj.get("spec") or {}).items()
                     if k in ("chart", "chartRef")}}


def _names_source(obj: dict, kind: str, namespace: str, name: str) -> bool:
    spec = obj.get("spec") or {}
    own = (obj.get("metadata") or {}).get("namespace", "")
    if kind == "HelmRepository":
        ref = (((spec.get("chart") or {}).get("spec")) or {}).get("sourceRef") or {}
    else:
        ref = spec.get("chartRef") or {}
    return (ref.get("kind") == kind and ref.get("name") == name
            and (ref.get("namespace") or own) == namespace)
