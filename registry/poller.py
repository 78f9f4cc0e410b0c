"""Registry polling: find new tags and rebuilt digests for every opted-in workload in the cache.

Off unless ``HEADWIND_POLLING_ENABLED=true``. Each (workload, container) is due when its own
interval has elapsed (``headwind.sh/polling-interval`` seconds, else ``HEADWIND_POLLING_INTERVAL``,
default 300), with jitter so workloads spread out; containers seen for the first time are due at
once. Workloads whose policy is ``none`` or invalid, or whose ``headwind.sh/event-source``
refuses polling, are skipped without touching a registry.

One cycle groups the due containers by (registry host, repository, credential identity) and
makes, per group, ONE tag listing, plus a manifest ``HEAD`` only where a digest matters: the
current tag under the ``digest`` policy, and the chosen target tag of a container pinned
``tag@digest`` (so the pin is kept). Manifests are never fetched. The result goes to
``engine.handle_candidates(repository, {tag: digest|None}, "polling", only=<due workloads>)``.

Requests run on a small thread pool per registry host (``max_concurrency_per_registry``). A host
that answers 429 (``Retry-After`` honoured), 5xx or not at all is backed off (exponential, capped)
and its containers stay due, while other hosts keep being polled in the same cycle; groups still
running on a slow host when a cycle's wait is over stay in flight and are handled by a later
cycle. The engine is only ever called from the poller's own thread.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests
from django.conf import settings

from operator_app import metrics as operator_metrics
from operator_app.core.charts import ChartRef
from operator_app.core.events import EventSource
from operator_app.core.images import ImageRef
from operator_app.core.policy import InvalidPolicy, Policy, PolicySpec, decide
from operator_app.core.versions import parse_tag
from operator_app.workloads import parse_artifact

from . import metrics, tagbook
from .charts import ChartRepositoryClient, NotModified
from .client import (
    RegistryAuthError,
    RegistryClient,
    RegistryError,
    RegistryNotFound,
    RegistryRateLimited,
    RegistryServerError,
    credential_identity,
)
from .credentials import CredentialStore

log = logging.getLogger(__name__)

DEFAULT_JITTER = 0.1
MAX_IDLE_SLEEP = 10.0  # new workloads are due at once; look for them this often
CLIENT_IDLE_SECONDS = 3600.0

Key = tuple[str, str, str]
ContainerKey = tuple[Key, str]


# --- backoff ----------------------------------------------------------------------------------


class HostBackoff:
    """Per-host pause after 429/5xx/connection failures.

    A 429 with ``Retry-After`` waits exactly that long (capped at ``retry_after_cap``); anything
    else (a 429 without it included) waits ``base * 2**(failures-1)`` plus up to 20 % jitter,
    capped at ``cap``. A success resets the host.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, base: float = 5.0,
                 cap: float = 600.0, retry_after_cap: float = 3600.0,
                 rng: random.Random | None = None) -> None:
        self.clock = clock
        self.base = base
        self.cap = cap
        self.retry_after_cap = retry_after_cap
        self.rng = rng or random.Random()
        self._lock = threading.Lock()
        self._failures: dict[str, int] = {}
        self._until: dict[str, float] = {}

    def blocked_until(self, host: str) -> float | None:
        with self._lock:
            until = self._until.get(host)
        return until if until is not None and until > self.clock() else None

    def failure(self, host: str, retry_after: float | None = None) -> float:
        with self._lock:
            failures = self._failures.get(host, 0) + 1
            self._failures[host] = failures
            if retry_after is not None:
                delay = min(max(retry_after, 0.0), self.retry_after_cap)
            else:
                delay = self.base * 2 ** (failures - 1) * (1 + self.rng.random() * 0.2)
                delay = min(self.cap, delay)
            until = self.clock() + delay
            self._until[host] = max(until, self._until.get(host, 0.0))
        metrics.BACKOFFS.labels(host).inc()
        return delay

    def success(self, host: str) -> None:
        """Reset the host, unless a concurrent request has just put it into backoff."""
        with self._lock:
            if self._until.get(host, 0.0) > self.clock():
                return
            self._failures.pop(host, None)
            self._until.pop(host, None)

    def failures(self, host: str) -> int:
        return self._failures.get(host, 0)


# --- cycle bookkeeping ------------------------------------------------------------------------


@dataclass
class CycleReport:
    """What one ``run_once`` did. ``requests`` counts HTTP requests by kind (tags, head, token)."""

    due_containers: int = 0
    due_workloads: int = 0
    skipped_workloads: int = 0
    groups: int = 0  # groups started by this call
    groups_finished: int = 0  # groups whose results this call handled (some maybe earlier's)
    groups_polled: int = 0  # ... of which succeeded
    in_flight: int = 0  # groups still running on a slow registry when the call returned
    requests: Counter = field(default_factory=Counter)
    new_tags: int = 0
    plans: list = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    backed_off: set[str] = field(default_factory=set)
    seconds: float = 0.0
    next_due_in: float = MAX_IDLE_SLEEP

    @property
    def idle(self) -> bool:
        return self.groups == 0 and self.groups_finished == 0

    def summary(self) -> str:
        requests_text = ", ".join(f"{k}={v}" for k, v in sorted(self.requests.items())) or "none"
        lines = [
            f"poll cycle: {self.due_containers} containers of {self.due_workloads} workloads due,"
            f" {self.groups} repositories started, {self.groups_polled} polled,"
            f" {self.in_flight} still in flight, in {self.seconds:.2f}s",
            f"requests: {requests_text}; new tags: {self.new_tags}; plans: {len(self.plans)}",
        ]
        lines += [f"plan: {p.workload.kind} {p.workload.namespace}/{p.workload.name}"
                  f" {p.container}: {p.current_image} -> {p.new_image}" for p in self.plans]
        lines += [f"error: {e}" for e in self.errors]
        lines += [f"backed off: {host}" for host in sorted(self.backed_off)]
        return "\n".join(lines)


@dataclass
class _Group:
    registry: str
    path: str
    identity: str
    credentials: list
    keys: set[Key] = field(default_factory=set)
    containers: list[ContainerKey] = field(default_factory=list)
    head_tags: set[str] = field(default_factory=set)
    pinned: list[tuple[PolicySpec, ImageRef]] = field(default_factory=list)
    needs_tags: bool = False  # False when every due container follows a digest only
    chart_oci: bool = False  # an OCI chart repository: its tags are chart versions
    #: An HTTP(S) chart repository (``path`` is then its URL): read its index.yaml instead.
    chart_access: ChartAccess | None = None
    charts: set[str] = field(default_factory=set)
    #: (spec, current, slot) of due containers with ``headwind.sh/min-release-age``: their
    #: candidates' release times are asked for (once per digest).
    aged: list[tuple[PolicySpec, ImageRef, str]] = field(default_factory=list)

    @property
    def repository(self) -> str:
        if self.chart_access is not None:
            return self.path
        return f"{self.registry}/{self.path}"


@dataclass(frozen=True)
class ChartAccess:
    """How to read an HTTP(S) chart repository: its HelmRepository's ``secretRef`` (basic
    auth) and ``certSecretRef`` (CA, client certificate); ``identity`` names it without
    secrets, so repositories read with different credentials are polled apart."""

    username: str = ""
    password: str = field(default="", repr=False)
    ca_pem: bytes | None = field(default=None, repr=False)
    cert_pem: bytes | None = field(default=None, repr=False)
    key_pem: bytes | None = field(default=None, repr=False)

    @property
    def identity(self) -> str:
        material = b"\0".join([self.username.encode(), self.password.encode(),
                                self.ca_pem or b"", self.cert_pem or b"", self.key_pem or b""])
        if not material.strip(b"\0"):
            return "anonymous"
        return "cred-" + hashlib.sha256(material).hexdigest()[:16]


@dataclass
class _Result:
    group: _Group
    tags: list[str] | None = None
    digests: dict[str, str] = field(default_factory=dict)
    chart_versions: dict[str, list[str]] = field(default_factory=dict)
    #: Release times learned in this poll (image configs, a chart index's ``created``).
    created: dict[str, dt.datetime | None] = field(default_factory=dict)
    chart_created: dict[str, dict[str, dt.datetime | None]] = field(default_factory=dict)
    not_modified: bool = False
    error: RegistryError | None = None
    skipped: bool = False  # host was (or got) backed off before this group ran

    @property
    def transient(self) -> bool:
        return self.skipped or isinstance(self.error, RegistryRateLimited | RegistryServerError)


# --- the poller -------------------------------------------------------------------------------


class Poller:
    """Polls registries for the workloads in ``cache`` and feeds ``engine``.

    ``credentials`` is anything with ``for_workload(workload, repository) -> [Credentials]``
    (default: a :class:`CredentialStore` on ``api``; with ``api=None``, anonymous).
    ``session_factory`` makes the ``requests.Session`` of each registry client (tests and the
    benchmark hook it to count requests).
    """

    def __init__(self, api, cache, engine, *, interval: float | None = None,
                 jitter: float = DEFAULT_JITTER, max_concurrency_per_registry: int | None = None,
                 clock: Callable[[], float] = time.monotonic, credentials=None,
                 backoff: HostBackoff | None = None,
                 session_factory: Callable[[], requests.Session] | None = None,
                 client_options: dict | None = None, rng: random.Random | None = None,
                 cycle_wait: float = 60.0,
                 sources: Callable[[str, str, str], dict | None] | None = None) -> None:
        self.api = api
        #: A HelmRelease's source objects (the operator's caches), for chart repository access.
        self.sources = sources or (lambda kind, namespace, name: None)
        self._chart_clients: dict[tuple[str, str], ChartRepositoryClient] = {}
        self._chart_versions: dict[tuple[str, str], dict[str, list[str]]] = {}
        self.cache = cache
        self.engine = engine
        self.interval = float(interval or settings.HEADWIND.polling_interval)
        self.jitter = max(0.0, min(jitter, 0.5))
        self.concurrency = int(max_concurrency_per_registry
                               or settings.HEADWIND.polling_concurrency)
        self.clock = clock
        self.credentials = credentials if credentials is not None else (
            CredentialStore(api) if api is not None else None)
        self.backoff = backoff or HostBackoff(clock=clock)
        self.session_factory = session_factory
        self.client_options = client_options or {}
        self.rng = rng or random.Random()
        self._next_due: dict[ContainerKey, float] = {}
        self._host_of: dict[ContainerKey, str] = {}
        self._specs: dict[tuple, PolicySpec | None] = {}
        self._known_tags: dict[tuple[str, str], frozenset[str]] = {}
        self._clients: dict[tuple[str, str], tuple[RegistryClient, float]] = {}
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._lock = threading.Lock()
        self._cycle_requests: Counter = Counter()
        self._inflight: dict[Future, _Group] = {}
        self._inflight_keys: set[ContainerKey] = set()
        self.cycle_wait = cycle_wait
        self._group_errors: dict[tuple[str, str, str], str] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    def run_forever(self, stop: threading.Event,
                    may_run: Callable[[], bool] = lambda: True) -> None:
        """Cycle whenever something is due, while ``may_run()`` (leadership, caches synced)."""
        log.info("registry polling on: interval %ss (per-workload %s overrides), "
                 "%d requests at a time per registry", int(self.interval),
                 "headwind.sh/polling-interval", self.concurrency)
        try:
            while not stop.is_set():
                if not may_run():
                    stop.wait(1.0)
                    continue
                try:
                    report = self.run_once(wait=MAX_IDLE_SLEEP)
                    wait = 0.0 if report.in_flight else report.next_due_in
                except Exception:  # noqa: BLE001 - the loop must outlive any one bad cycle
                    log.exception("poll cycle failed")
                    wait = MAX_IDLE_SLEEP
                stop.wait(max(0.2, min(wait, MAX_IDLE_SLEEP)))
        finally:
            self.close()

    def close(self) -> None:
        self._inflight.clear()
        self._inflight_keys.clear()
        for executor in self._executors.values():
            executor.shutdown(wait=False, cancel_futures=True)
        self._executors.clear()
        for client, _ in self._clients.values():
            client.close()
        self._clients.clear()

    # -- one cycle -----------------------------------------------------------------------------

    def run_once(self, wait: float | None = None) -> CycleReport:
        """Poll what is due; handle results that arrive within ``wait`` seconds (default
        ``cycle_wait``). Groups still running then (a slow registry) stay in flight and are
        handled by a later call, so they never hold up the other hosts' next cycles."""
        started = time.perf_counter()
        report = CycleReport()
        with self._lock:
            self._cycle_requests = report.requests
        groups = self._collect(report)
        report.groups = len(groups)
        for group in groups:
            if self.backoff.blocked_until(group.registry) is not None:
                report.backed_off.add(group.registry)
                continue
            future = self._executor(group.registry).submit(self._poll_group, group)
            self._inflight[future] = group
            self._inflight_keys.update(group.containers)
        if self._inflight:
            try:
                for future in as_completed(list(self._inflight),
                                           timeout=self.cycle_wait if wait is None else wait):
                    self._harvest(future, report)
            except TimeoutError:
                pass
        report.in_flight = len(self._inflight)
        report.next_due_in = self._next_wakeup()
        report.seconds = time.perf_counter() - started
        if report.idle:
            return report
        metrics.POLL_CYCLES.inc()
        metrics.CYCLE_SECONDS.observe(report.seconds)
        notable = report.plans or report.errors or report.new_tags
        level = logging.INFO if notable else logging.DEBUG
        log.log(level, "%s", report.summary().replace("\n", "; "))
        return report

    def _harvest(self, future: Future, report: CycleReport) -> None:
        group = self._inflight.pop(future)
        self._inflight_keys.difference_update(group.containers)
        report.groups_finished += 1
        try:
            result = future.result()
        except Exception as exc:  # noqa: BLE001 - a bug in one group must not end the cycle
            log.exception("polling %s failed unexpectedly", group.repository)
            result = _Result(group, error=RegistryError(group.registry, None,
                                                        f"unexpected {type(exc).__name__}"))
        self._finish(result, report)

    def _spec(self, workload) -> PolicySpec | None:
        cached = self._specs.get(workload.annotations, False)
        if cached is False:
            try:
                cached = PolicySpec.from_annotations(workload.annotation_map)
            except InvalidPolicy:
                cached = None  # the engine logs invalid annotations; polling just skips them
            if len(self._specs) > 10_000:
                self._specs.clear()
            self._specs[workload.annotations] = cached
        return cached  # type: ignore[return-value]

    def _collect(self, report: CycleReport) -> list[_Group]:
        """Due (workload, container) pairs grouped by (host, repository, credential identity)."""
        now = self.clock()
        groups: dict[tuple[str, str, str], _Group] = {}
        seen: set[ContainerKey] = set()
        repositories: set[str] = set()
        due_workloads: set[Key] = set()
        for workload in self.cache.snapshot():
            spec = self._spec(workload)
            if (spec is None or spec.policy is Policy.NONE
                    or not spec.accepts_source(EventSource.POLLING)):
                report.skipped_workloads += 1
                continue
            for container in workload.containers:
                if not spec.applies_to_container(container.name):
                    continue
                try:
                    ref = parse_artifact(workload.kind, container.image)
                except ValueError:
                    continue
                tag = ref.effective_tag
                if tag is None:  # digest-only reference: no tag to follow
                    continue
                registry, _, path = ref.repository.partition("/")
                if isinstance(ref, ChartRef) and not ref.is_oci:
                    # host[:port] only: it labels metrics, and a URL may carry user:password@
                    registry = urlsplit(ref.source).netloc.rpartition("@")[2]
                ckey = (workload.key, container.name)
                seen.add(ckey)
                self._host_of[ckey] = registry
                repositories.add(ref.repository)
                if self._next_due.get(ckey, 0.0) > now or ckey in self._inflight_keys:
                    continue
                if self.backoff.blocked_until(registry) is not None:
                    report.backed_off.add(registry)
                    continue
                if isinstance(ref, ChartRef) and not ref.is_oci:
                    access = self._chart_access(workload, ref)
                    gkey = (registry, ref.source, access.identity)
                    group = groups.get(gkey)
                    if group is None:
                        group = groups[gkey] = _Group(registry, ref.source, access.identity, [],
                                                      chart_access=access)
                    group.charts.add(ref.chart)
                    group.keys.add(workload.key)
                    group.containers.append(ckey)
                    due_workloads.add(workload.key)
                    continue
                credentials = (self.credentials.for_workload(workload, ref.repository)
                               if self.credentials is not None else [])
                identity = "+".join(credential_identity(c) for c in credentials) or "anonymous"
                gkey = (registry, path, identity)
                group = groups.get(gkey)
                if group is None:
                    group = groups[gkey] = _Group(registry, path, identity, list(credentials),
                                                  chart_oci=isinstance(ref, ChartRef))
                group.keys.add(workload.key)
                group.containers.append(ckey)
                due_workloads.add(workload.key)
                if spec.policy is Policy.DIGEST and isinstance(ref, ImageRef):
                    group.head_tags.add(tag)
                else:
                    group.needs_tags = True
                    if isinstance(ref, ImageRef) and ref.digest is not None:
                        group.pinned.append((spec, ref))
                    if spec.min_release_age_seconds and isinstance(ref, ImageRef):
                        group.aged.append((spec, ref, container.name))
        for gone in [k for k in self._host_of if k not in seen]:
            del self._host_of[gone]
            self._next_due.pop(gone, None)
        for gone in [k for k in self._known_tags if k[0] not in repositories]:
            del self._known_tags[gone]
        report.due_containers = sum(len(g.containers) for g in groups.values())
        report.due_workloads = len(due_workloads)
        return list(groups.values())

    def _next_wakeup(self) -> float:
        """Seconds until some container is due on a host that is not backed off."""
        now = self.clock()
        soonest = now + MAX_IDLE_SLEEP
        blocked = {host: self.backoff.blocked_until(host) for host in set(self._host_of.values())}
        for ckey, host in self._host_of.items():
            due = max(self._next_due.get(ckey, now), blocked.get(host) or now)
            soonest = min(soonest, due)
        return max(0.0, soonest - now)

    def _interval_for(self, ckey: ContainerKey) -> float:
        workload = self.cache.get(ckey[0])
        spec = self._spec(workload) if workload is not None else None
        if spec is not None and spec.polling_interval_seconds:
            return float(spec.polling_interval_seconds)
        return self.interval

    def _reschedule(self, group: _Group) -> None:
        now = self.clock()
        for ckey in group.containers:
            interval = self._interval_for(ckey)
            spread = 1 + self.rng.uniform(-self.jitter, self.jitter) if self.jitter else 1
            self._next_due[ckey] = now + interval * spread

    def _finish(self, result: _Result, report: CycleReport) -> None:
        group = result.group
        gkey = (group.registry, group.path, group.identity)
        if result.skipped:
            report.backed_off.add(group.registry)
            return
        if group.chart_access is not None or group.chart_oci:
            kind = "http" if group.chart_access is not None else "oci"
            outcome = "error" if result.error is not None else (
                "not_modified" if result.not_modified else "ok")
            operator_metrics.HELM_REPOSITORY_QUERIES.labels(kind, outcome).inc()
            if result.error is not None:
                operator_metrics.HELM_REPOSITORY_ERRORS.labels(kind).inc()
        if result.error is not None:
            metrics.POLL_ERRORS.labels(group.registry).inc()
            text = f"{group.repository}: {result.error}"
            report.errors.append(text)
            if self._group_errors.get(gkey) != str(result.error):
                log.warning("polling %s failed: %s", group.repository, result.error)
            self._group_errors[gkey] = str(result.error)
            if result.transient:
                report.backed_off.add(group.registry)
            else:
                self._reschedule(group)  # auth/not found: try again next interval
            return
        if self._group_errors.pop(gkey, None) is not None:
            log.info("polling %s works again", group.repository)
        report.groups_polled += 1
        checked = metrics.HELM_CHARTS_CHECKED if (
            group.chart_access is not None or group.chart_oci) else metrics.IMAGES_CHECKED
        checked.labels(group.registry).inc(len(group.containers))
        if group.chart_access is not None:
            self._finish_charts(result, report)
            return
        tags = result.tags or []
        if result.tags is not None:
            known_key = (group.repository, group.identity)
            previous = self._known_tags.get(known_key)
            current = frozenset(tags)
            if previous is not None:
                fresh = len(current - previous)
                if fresh:
                    report.new_tags += fresh
                    found = metrics.HELM_NEW_VERSIONS if group.chart_oci else metrics.NEW_TAGS
                    found.labels(group.registry).inc(fresh)
            self._known_tags[known_key] = current
        candidates: dict[str, str | None] = dict.fromkeys(tags)
        candidates.update(result.digests)
        if result.tags is not None:
            tagbook.record_listing(group.repository, tags, digests=result.digests,
                                   created=result.created)
        self._reschedule(group)
        try:
            plans = self.engine.handle_candidates(group.repository, candidates, "polling",
                                                  only=set(group.keys))
        except Exception:  # noqa: BLE001 - one failing dispatch must not stop other groups
            log.exception("engine failed on polled %s", group.repository)
            report.errors.append(f"{group.repository}: engine error")
            return
        report.plans.extend(plans)

    def _finish_charts(self, result: _Result, report: CycleReport) -> None:
        """An HTTP(S) chart repository: each chart's versions go to the engine for the
        HelmReleases that use it."""
        group = result.group
        self._reschedule(group)
        for chart in sorted(group.charts):
            versions = result.chart_versions.get(chart, [])
            repository = f"{group.path.rstrip('/')}/{chart}"
            tagbook.record_listing(repository, versions,
                                   created=result.chart_created.get(chart, {}))
            known_key = (repository, group.identity)
            previous = self._known_tags.get(known_key)
            current = frozenset(versions)
            if previous is not None and current - previous:
                report.new_tags += len(current - previous)
                metrics.HELM_NEW_VERSIONS.labels(group.registry).inc(len(current - previous))
            self._known_tags[known_key] = current
            try:
                plans = self.engine.handle_candidates(repository, dict.fromkeys(versions),
                                                      "polling", only=set(group.keys))
            except Exception:  # noqa: BLE001 - one failing dispatch must not stop the others
                log.exception("engine failed on polled %s", repository)
                report.errors.append(f"{repository}: engine error")
                continue
            report.plans.extend(plans)

    def _chart_access(self, workload, ref: ChartRef) -> ChartAccess:
        """The HelmRepository's basic-auth ``secretRef`` and TLS ``certSecretRef``, read from
        Secrets in the source's namespace (through the credential cache)."""
        source = self.sources(*workload.source) if workload.source else None
        if source is None or self.credentials is None:
            return ChartAccess()
        spec = source.get("spec") or {}
        namespace = (source.get("metadata") or {}).get("namespace") or workload.secrets_namespace
        auth = self.credentials.secret_data(namespace, (spec.get("secretRef") or {})["name"]) \
            if (spec.get("secretRef") or {}).get("name") else {}
        tls = self.credentials.secret_data(namespace,
                                           (spec.get("certSecretRef") or {})["name"]) \
            if (spec.get("certSecretRef") or {}).get("name") else {}
        return ChartAccess(
            username=auth.get("username", b"").decode(errors="replace"),
            password=auth.get("password", b"").decode(errors="replace"),
            ca_pem=tls.get("ca.crt") or None,
            cert_pem=tls.get("tls.crt") if tls.get("tls.key") else None,
            key_pem=tls.get("tls.key") if tls.get("tls.crt") else None)

    def _chart_client(self, group: _Group) -> ChartRepositoryClient:
        key = (group.path, group.identity)
        with self._lock:
            client = self._chart_clients.get(key)
            if client is None:
                access = group.chart_access or ChartAccess()
                client = self._chart_clients[key] = ChartRepositoryClient(
                    group.path, username=access.username or None,
                    password=access.password or None, ca_pem=access.ca_pem,
                    cert_pem=access.cert_pem, key_pem=access.key_pem,
                    ca_file=settings.HEADWIND.registry_ca_file or None,
                    observer=self._observer(group.registry))
            return client

    def _poll_chart_index(self, group: _Group) -> _Result:
        """One conditional read of an index.yaml: a 304 reuses the versions read last time."""
        client = self._chart_client(group)
        key = (group.path, group.identity)
        known = self._chart_versions.get(key, {})
        wanted = set(group.charts) | set(known)
        try:
            with operator_metrics.time_chart_query("http"):
                result = client.fetch(wanted)
        except RegistryRateLimited as exc:
            self.backoff.failure(group.registry, exc.retry_after)
            return _Result(group, error=exc)
        except RegistryServerError as exc:
            self.backoff.failure(group.registry)
            return _Result(group, error=exc)
        except RegistryError as exc:
            return _Result(group, error=exc)
        self.backoff.success(group.registry)
        if result is NotModified:
            return _Result(group, chart_versions=dict(known), not_modified=True)
        versions = {chart: [v.version for v in entries]
                    for chart, entries in result.versions.items()}
        created = {chart: {v.version: v.created for v in entries}
                   for chart, entries in result.versions.items()}
        self._chart_versions[key] = versions
        return _Result(group, chart_versions=versions, chart_created=created)

    # -- registry work (pool threads) ----------------------------------------------------------

    def _executor(self, host: str) -> ThreadPoolExecutor:
        executor = self._executors.get(host)
        if executor is None:
            executor = self._executors[host] = ThreadPoolExecutor(
                max_workers=max(1, self.concurrency), thread_name_prefix=f"poll-{host}")
        return executor

    def _client(self, host: str, credentials) -> RegistryClient:
        identity = credential_identity(credentials)
        now = self.clock()
        with self._lock:
            for key in [k for k, (_, used) in self._clients.items()
                        if now - used > CLIENT_IDLE_SECONDS]:
                self._clients.pop(key)[0].close()
            entry = self._clients.get((host, identity))
            if entry is None:
                options = dict(self.client_options)
                if self.session_factory is not None:
                    options["session"] = self.session_factory()
                client = RegistryClient(host, credentials=credentials,
                                        observer=self._observer(host),
                                        pool_size=self.concurrency, **options)
            else:
                client = entry[0]
            self._clients[(host, identity)] = (client, now)
            return client

    def _observer(self, host: str) -> Callable[[str, str], None]:
        def observe(kind: str, outcome: str) -> None:
            metrics.POLL_REQUESTS.labels(host, kind, outcome).inc()
            with self._lock:
                self._cycle_requests[kind] += 1
        return observe

    def _poll_group(self, group: _Group) -> _Result:
        host = group.registry
        if self.backoff.blocked_until(host) is not None:
            return _Result(group, skipped=True)
        if group.chart_access is not None:
            return self._poll_chart_index(group)
        client: RegistryClient | None = None
        tags: list[str] | None = None  # None: digest policy only, no listing needed
        digests: dict[str, str] = {}
        try:
            if group.needs_tags:
                with operator_metrics.time_chart_query("oci" if group.chart_oci else None):
                    client, tags = self._authenticated(group,
                                                       lambda c: c.list_tags(group.path))
            heads = set(group.head_tags)
            for spec, current in group.pinned:
                decision = decide(spec, current, dict.fromkeys(tags or []))
                if decision is not None:
                    heads.add(decision.tag)
            for tag in sorted(heads):
                if self.backoff.blocked_until(host) is not None:
                    return _Result(group, skipped=True)
                try:
                    client, digests[tag] = self._with_client(
                        group, client, lambda c, tag=tag: c.head_digest(group.path, tag))
                except RegistryError as exc:
                    if exc.status != 404:  # a vanished tag is no error
                        raise
            created = self._release_times(group, client, tags) if group.aged and tags else {}
            if client is not None and client.rate_limit_remaining is not None:
                metrics.RATELIMIT_REMAINING.labels(host).set(client.rate_limit_remaining)
        except RegistryRateLimited as exc:
            self.backoff.failure(host, exc.retry_after)
            return _Result(group, error=exc)
        except RegistryServerError as exc:
            self.backoff.failure(host)
            return _Result(group, error=exc)
        except RegistryError as exc:
            return _Result(group, error=exc)
        self.backoff.success(host)
        return _Result(group, tags=tags, digests=digests, created=created)

    def _release_times(self, group: _Group, client: RegistryClient | None,
                       tags: list[str]) -> dict[str, dt.datetime | None]:
        """For ``headwind.sh/min-release-age``: the image config's ``created`` of the few
        newest candidates each aged container's policy accepts, and of what it runs, asked
        once per digest (the tag book remembers the answer, even "none")."""
        wanted: set[str] = set()
        for spec, current, slot in group.aged:
            accepted = []
            for tag in tags:
                choice = decide(spec, current, {tag: None}, slot=slot)
                if choice is not None and choice.tag == tag:
                    accepted.append(tag)
            wanted.update(sorted(accepted, key=_version_key, reverse=True)[:RELEASE_TIMES_PER])
            if current.effective_tag:
                wanted.add(current.effective_tag)
        tagbook.record_listing(group.repository, tags)  # rows exist before they are asked for
        found: dict[str, dt.datetime | None] = {}
        for tag in sorted(tagbook.unchecked(group.repository, wanted)):
            try:
                client, found[tag] = self._with_client(
                    group, client, lambda c, tag=tag: c.image_created(group.path, tag))
            except RegistryNotFound:
                continue
            except RegistryError as exc:
                log.info("release time of %s:%s not read: %s", group.repository, tag, exc)
                found[tag] = None
        return found

    def _with_client(self, group: _Group, client: RegistryClient | None,
                     call: Callable[[RegistryClient], object]):
        """``(client, call(client))``; with no client yet, the first one whose credentials
        work (``_authenticated``), kept for the group's next calls."""
        if client is None:
            return self._authenticated(group, call)
        return client, call(client)

    def _authenticated(self, group: _Group, call: Callable[[RegistryClient], object]):
        """``call`` with the group's credentials in order (most specific first) until one is
        accepted, like the kubelet trying each matching pull secret; returns (client, result)."""
        candidates = group.credentials or [None]
        for index, credentials in enumerate(candidates):
            client = self._client(group.registry, credentials)
            try:
                return client, call(client)
            except RegistryAuthError:
                if index == len(candidates) - 1:
                    raise
        raise AssertionError("unreachable")


#: Candidates per aged container whose release time is asked for.
RELEASE_TIMES_PER = 5


def _version_key(tag: str):
    parsed = parse_tag(tag)
    return (1, parsed.version) if parsed is not None else (0, tag)


def start_poller(api, cache, engine, *, stop: threading.Event, may_run: Callable[[], bool],
                 sources: Callable[[str, str, str], dict | None] | None = None,
                 ) -> threading.Thread | None:
    """Run the poller on a daemon thread if ``HEADWIND_POLLING_ENABLED``; else return None."""
    if not settings.HEADWIND.polling_enabled:
        log.info("registry polling is off (set HEADWIND_POLLING_ENABLED=true to turn it on)")
        return None
    poller = Poller(api, cache, engine, sources=sources)
    thread = threading.Thread(target=poller.run_forever, args=(stop, may_run),
                              name="registry-poller", daemon=True)
    thread.start()
    return thread
