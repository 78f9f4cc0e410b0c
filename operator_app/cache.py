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
from collections.abc import Iterable, Iterator

from . import kube, metrics
from .core.images import InvalidImageReference, parse_image
from .workloads import ContainerImage, WorkloadKind, WorkloadProjection, project

log = logging.getLogger(__name__)

Key = tuple[str, str, str]


class WorkloadCache:
    """Thread-safe store of projections plus the repository index."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[Key, WorkloadProjection] = {}
        self._index: dict[str, set[tuple[Key, str]]] = defaultdict(set)
        self._repos_of: dict[Key, set[str]] = {}
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

    def upsert(self, item: WorkloadProjection) -> None:
        with self._lock:
            self._drop(item.key)
            self._items[item.key] = item
            self._counts[item.kind] += 1
            repos = set()
            for container in item.containers:
                repository = _repository(container)
                if repository:
                    self._index[repository].add((item.key, container.name))
                    repos.add(repository)
            self._repos_of[item.key] = repos

    def remove(self, key: Key) -> None:
        with self._lock:
            self._drop(key)

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
            for key, container_name in self._index.get(repository, ()):
                item = self._items[key]
                for container in item.containers:
                    if container.name == container_name:
                        found.append((item, container))
            return found

    def _drop(self, key: Key) -> None:
        if self._items.pop(key, None) is not None:
            self._counts[key[0]] -= 1
        for repository in self._repos_of.pop(key, ()):
            entries = self._index.get(repository)
            if entries is None:
                continue
            for entry in [e for e in entries if e[0] == key]:
                entries.discard(entry)
            if not entries:
                del self._index[repository]


def _repository(container: ContainerImage) -> str | None:
    try:
        return parse_image(container.image).repository
    except InvalidImageReference:
        log.warning("container %s has an unparseable image %r; not indexed",
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

    page_size = 500
    watch_timeout = 290  # server-side; the client read timeout is a little longer

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
                metrics.WATCH_RESTARTS.labels(self.label, "error").inc()
                if isinstance(exc, kube.KubeError) and exc.status == 410:
                    need_list = True
                    continue
                backoff = self._pause(backoff, str(exc))
            except Exception:  # noqa: BLE001 - a dead watcher would silently stop all updates
                log.exception("%s watcher failed unexpectedly; re-listing", self.label)
                metrics.WATCH_RESTARTS.labels(self.label, "error").inc()
                need_list = True
                backoff = self._pause(backoff, "unexpected error")

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


class Informer(ListWatcher):
    """Keeps one workload kind's opted-in objects in the cache."""

    def __init__(self, api, kind: WorkloadKind, cache: WorkloadCache,
                 stop: threading.Event) -> None:
        super().__init__(api, kind.collection_path(), kind.kind, stop)
        self.kind = kind
        self.cache = cache

    def replace(self, objects: Iterator[dict]) -> None:
        items = [p for p in (project(self.kind, obj) for obj in objects) if p is not None]
        self.cache.replace_kind(self.kind.kind, items)
        metrics.WATCHED.labels(self.kind.kind).set(self.cache.count(self.kind.kind))
        log.info("%s: %d opted-in workloads listed", self.kind.kind, len(items))

    def apply_event(self, event_type: str, obj: dict) -> None:
        meta = obj.get("metadata") or {}
        key = (self.kind.kind, meta.get("namespace", ""), meta.get("name", ""))
        projection = project(self.kind, obj) if event_type != "DELETED" else None
        if projection is None:
            self.cache.remove(key)
        else:
            self.cache.upsert(projection)
        metrics.WATCHED.labels(self.kind.kind).set(self.cache.count(self.kind.kind))
