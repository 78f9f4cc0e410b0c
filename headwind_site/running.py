"""The composition root of the long-running processes: it wires the apps together.

``operator_app`` knows nothing of ``registry`` (polling, webhook verification) or ``approvals``
(the UpdateRequest mirror, expiry); this module, above all three, connects them. The two
management commands (``run_operator``, ``run_poller``) parse their arguments and call
:func:`run_operator` or :func:`run_poller`; both share the same start-up: signals, informer
caches for every workload kind and a leader Lease.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence

from django.conf import settings

from approvals.expiry import expire
from approvals.mirror import UpdateRequestMirror
from approvals.services import pending_counts
from headwind_site.inventory import Inventory
from headwind_site.tagbook_writer import TagBookWriter
from operator_app import eventqueue, hops, kube, metrics, recorder
from operator_app.approved import ApprovalWork
from operator_app.cache import (
    HelmReleaseInformer,
    Informer,
    Observer,
    SourceCache,
    WorkloadCache,
)
from operator_app.dispatch import ClusterDispatcher, RecordingDispatcher
from operator_app.engine import Engine
from operator_app.leader import LeaderElector
from operator_app.periodic import LeaderLoop
from operator_app.rollouts import RolloutWatcher
from operator_app.tasks import queue_update
from operator_app.workloads import HELMRELEASE, KINDS, SOURCE_KINDS
from registry import tagbook
from registry.credentials import CredentialStore
from registry.poller import CycleReport, Poller, start_poller
from registry.verify import WebhookVerifier

log = logging.getLogger(__name__)


class CachesNotSynced(RuntimeError):
    """An informer did not finish its first listing in time."""


class Replica:
    """What every long-running replica has: a stop event set by SIGINT/SIGTERM, warm caches of
    every workload kind, and (once :meth:`elect` ran) a leader Lease."""

    def __init__(self, api, stop: threading.Event | None = None,
                 observers: Sequence[Observer] = ()) -> None:
        self.api = api
        self.stop = stop or threading.Event()
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: self.stop.set())
        self.cache = WorkloadCache()
        self.elector: LeaderElector | None = None
        self.sources: dict[str, SourceCache] = {}
        releases = HelmReleaseInformer(api, HELMRELEASE, self.cache, self.stop,
                                       sources=self.source, report=self._report_unfollowed,
                                       observers=observers)
        self.sources = {kind.kind: SourceCache(api, kind, self.stop, releases.source_changed)
                        for kind in SOURCE_KINDS.values()}
        self.informers: list = [
            *(Informer(api, kind, self.cache, self.stop, observers) for kind in KINDS.values()
              if kind is not HELMRELEASE),
            releases, *self.sources.values()]
        for informer in self.informers:
            informer.start()

    def source(self, kind: str, namespace: str, name: str) -> dict | None:
        cache = self.sources.get(kind)
        return cache.get(kind, namespace, name) if cache is not None else None

    def _report_unfollowed(self, obj: dict, why: str) -> None:
        """An Event on a HelmRelease Headwind leaves alone (only the leader writes it)."""
        if self.elector is None or not self.elector.leading():
            return
        meta = obj.get("metadata") or {}
        recorder.record_event(self.api, api_version=HELMRELEASE.api_version, kind="HelmRelease",
                              namespace=meta.get("namespace", ""), name=meta.get("name", ""),
                              uid=meta.get("uid"), event_type="Normal",
                              reason="ChartFollowedByFlux",
                              message=f"Headwind leaves this chart alone: {why}")

    def synced(self) -> bool:
        return all(informer.synced.is_set() for informer in self.informers)

    def wait_synced(self, timeout: float) -> None:
        for informer in self.informers:
            if not informer.synced.wait(timeout):
                raise CachesNotSynced(f"{informer.label} cache did not sync in {timeout:.0f}s")

    def elect(self, lease: str, namespace: str | None, identity: str | None) -> LeaderElector:
        namespace = namespace or settings.HEADWIND_NAMESPACE
        _ensure_namespace(self.api, namespace)
        self.elector = LeaderElector(self.api, namespace, name=lease, identity=identity,
                                     stop=self.stop)
        self.elector.start()
        return self.elector

    def may_act(self) -> bool:
        """Only the Lease holder acts, and only once its caches are complete."""
        return self.elector is not None and self.elector.leading() and self.synced()


def _ensure_namespace(api, namespace: str) -> None:
    try:
        kube.request(api, "POST", "/api/v1/namespaces", body={"metadata": {"name": namespace}})
    except kube.KubeError as exc:
        if exc.status not in (409, 403):
            raise


def run_operator(api, *, lease_namespace: str | None = None, identity: str | None = None,
                 stop: threading.Event | None = None, dispatcher=None) -> None:
    """``manage.py run_operator``: caches, leader election, the event stream, polling (when
    enabled), the UpdateRequest mirror, expiry and the rollout watcher. Returns when ``stop``
    is set."""
    stop = stop or threading.Event()
    rollouts = RolloutWatcher(api, queue_update, stop, lambda: replica.may_act(),
                              interval=settings.HEADWIND.rollout_check_interval)
    replica = Replica(api, stop, observers=[rollouts.observe])
    rollouts.start()
    metrics.PENDING_REQUESTS.source = pending_counts  # headwind_updates_pending*, from the mirror
    metrics.serve(settings.HEADWIND.operator_metrics_port)
    elector = replica.elect("headwind-operator", lease_namespace, identity)
    pushes = TagBookWriter()  # off the consumer's path (headwind_site/tagbook_writer.py)
    engine = Engine(replica.cache, dispatcher or ClusterDispatcher(api),
                    released=pushes.released)
    UpdateRequestMirror(api, replica.stop).start()
    approvals = ApprovalWork(api, queue_update)
    LeaderLoop("approvals", settings.HEADWIND.expiry_interval,
               [lambda: expire(api), approvals.run], replica.stop, elector.leading).start()
    start_poller(api, replica.cache, engine, stop=replica.stop, may_run=replica.may_act,
                 sources=replica.source)
    log.info("operator running as %s (lease %s/%s)", elector.identity,
             lease_namespace or settings.HEADWIND_NAMESPACE, elector.name)
    verifier = WebhookVerifier(replica.cache, CredentialStore(api))

    def handle(event) -> None:
        checked = verifier.check(event)
        if checked is not None:
            hops.mark("verified")
            engine.handle(checked)
            pushes.record_push(checked.repository, checked.tag, checked.digest,
                               source=str(checked.source))

    Inventory(replica.cache, replica.stop, replica.may_act, offer=handle).start()

    eventqueue.consume(eventqueue.connect(), handle, replica.stop, may_run=replica.may_act,
                       consumer=elector.identity, prepare=verifier.prefetch)
    pushes.close()
    elector.join(timeout=10)
    log.info("operator stopped")


def run_poller(api, *, once: bool = False, dry_run: bool = False,
               lease_namespace: str | None = None, identity: str | None = None,
               report: Callable[[CycleReport], None] = lambda _report: None) -> None:
    """``manage.py run_poller``: caches, engine and poller in their own process, on their own
    Lease (``headwind-poller``); ``once`` runs one cycle with every workload due and hands its
    report to ``report``; ``dry_run`` decides without proposing or applying anything."""
    replica = Replica(api)
    dispatcher = RecordingDispatcher() if dry_run else ClusterDispatcher(api)
    poller = Poller(api, replica.cache,
                    Engine(replica.cache, dispatcher, released=tagbook.released),
                    sources=replica.source)
    try:
        if once:
            replica.wait_synced(60)
            report(poller.run_once())
            return
        if not settings.HEADWIND.polling_enabled:
            log.warning("HEADWIND_POLLING_ENABLED is not true; run_poller polls anyway "
                        "(do not also enable polling inside run_operator)")
        metrics.serve(settings.HEADWIND.poller_metrics_port)
        elector = replica.elect("headwind-poller", lease_namespace, identity)
        poller.run_forever(replica.stop, replica.may_act)
        elector.join(timeout=10)
    finally:
        replica.stop.set()
        poller.close()
