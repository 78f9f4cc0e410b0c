"""The long-running operator: caches for every workload kind, leader election, and the engine
fed from the durable event stream. Every replica keeps warm caches; only the leader acts."""

from __future__ import annotations

import logging
import os
import signal
import threading

from django.conf import settings

from registry.credentials import CredentialStore
from registry.poller import start_poller
from registry.verify import WebhookVerifier

from . import eventqueue, kube, metrics
from .cache import Informer, WorkloadCache
from .engine import Engine, UpdatePlan
from .leader import LeaderElector
from .workloads import KINDS

log = logging.getLogger(__name__)


class ClusterDispatcher:
    """Real effects: UpdateRequests in the cluster, apply tasks through Celery."""

    def __init__(self, api) -> None:
        self.api = api
        # The event consumer and the poller both dispatch: proposals for one target must not
        # interleave (each would list, create and supersede from its own stale view).
        self._propose_lock = threading.Lock()

    def propose(self, plan: UpdatePlan) -> None:
        from . import update_requests

        with self._propose_lock:
            result = update_requests.propose(
                self.api, kind=KINDS[plan.workload.kind], workload=plan.workload,
                container=plan.container, current_image=plan.current_image,
                new_image=plan.new_image, new_digest=plan.new_digest, spec=plan.spec,
                reason=plan.reason, source=plan.source,
            )
        log.info("UpdateRequest %s/%s: %s", plan.workload.namespace, result.name,
                 "created" if result.created else (result.skipped_reason or "already exists"))

    def apply(self, plan: UpdatePlan) -> None:
        from .tasks import apply_update_task

        apply_update_task.delay(
            kind=plan.workload.kind, namespace=plan.workload.namespace, name=plan.workload.name,
            container=plan.container, new_image=plan.new_image,
            expected_image=plan.current_image,
        )


def _ensure_namespace(api, namespace: str) -> None:
    try:
        kube.request(api, "POST", "/api/v1/namespaces",
                     body={"metadata": {"name": namespace}})
    except kube.KubeError as exc:
        if exc.status not in (409, 403):
            raise


def run(api, *, lease_namespace: str | None = None, identity: str | None = None,
        stop: threading.Event | None = None, dispatcher=None) -> None:
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
    metrics.serve(int(os.environ.get("HEADWIND_OPERATOR_METRICS_PORT", "9090")))
    lease_namespace = lease_namespace or settings.HEADWIND_NAMESPACE
    _ensure_namespace(api, lease_namespace)

    cache = WorkloadCache()
    informers = [Informer(api, kind, cache, stop) for kind in KINDS.values()]
    elector = LeaderElector(api, lease_namespace, identity=identity, stop=stop)
    engine = Engine(cache, dispatcher or ClusterDispatcher(api))
    for thread in (*informers, elector):
        thread.start()
    _start_approvals(api, stop, elector)

    def may_act() -> bool:
        return elector.leading() and all(i.synced.is_set() for i in informers)

    start_poller(api, cache, engine, stop=stop, may_run=may_act)  # no-op unless enabled
    log.info("operator running as %s (lease %s/%s)", elector.identity, lease_namespace,
             elector.name)
    verifier = WebhookVerifier(cache, CredentialStore(api))

    def handle(event) -> None:
        checked = verifier.check(event)
        if checked is not None:
            engine.handle(checked)

    eventqueue.consume(eventqueue.connect(), handle, stop, may_run=may_act,
                       consumer=elector.identity)
    elector.join(timeout=10)
    log.info("operator stopped")


def _start_approvals(api, stop: threading.Event, elector: LeaderElector) -> None:
    """The UpdateRequest mirror on every replica; expiring overdue requests on the leader."""
    from approvals.mirror import UpdateRequestMirror
    from approvals.tasks import ExpiryLoop

    UpdateRequestMirror(api, stop).start()
    ExpiryLoop(api, stop, is_leader=elector.leading).start()
