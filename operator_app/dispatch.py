"""What the engine's decisions do on a real cluster: open UpdateRequests, or queue the apply
task. Tests and ``run_poller --dry-run`` pass their own dispatcher instead."""

from __future__ import annotations

import logging
import threading

from . import hops, notify, proposals
from .apply import UpdateCommand
from .engine import UpdatePlan
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
        with self._propose_lock:
            result = proposals.propose(
                self.api, kind=KINDS[plan.workload.kind], workload=plan.workload,
                container=plan.container, current_image=plan.current_image,
                new_image=plan.new_image, new_digest=plan.new_digest, spec=plan.spec,
                reason=plan.reason, source=plan.source,
            )
        log.info("UpdateRequest %s/%s: %s", plan.workload.namespace, result.name,
                 "created" if result.created else (result.skipped_reason or "already exists"))
        if result.created:
            _notify(notify.Event.REQUEST_CREATED, plan, request=result.name)
        for name in result.superseded:
            _notify(notify.Event.REQUEST_SUPERSEDED, plan, request=name,
                    reason=f"superseded by {result.name} ({plan.new_image})")

    def apply(self, plan: UpdatePlan) -> None:
        from .tasks import queue_update

        queue_update(UpdateCommand(
            kind=plan.workload.kind, namespace=plan.workload.namespace, name=plan.workload.name,
            container=plan.container, new_image=plan.new_image,
            expected_image=plan.current_image,
        ), hops=hops.stamped("decided"))
        _notify(notify.Event.UPDATE_DETECTED, plan)


def _notify(event: notify.Event, plan: UpdatePlan, *, request: str | None = None,
            reason: str | None = None) -> None:
    workload = plan.workload
    notify.emit(notify.Notice(
        event=event, kind=workload.kind, namespace=workload.namespace, name=workload.name,
        slot=plan.container, from_ref=plan.current_image, to_ref=plan.new_image,
        policy=plan.spec.policy.value, actor="headwind", reason=reason or plan.reason,
        request=request, annotations=workload.annotation_map))


class RecordingDispatcher:
    """Decides but does nothing: ``run_poller --dry-run`` prints the plans instead."""

    def propose(self, plan: UpdatePlan) -> None:
        pass

    def apply(self, plan: UpdatePlan) -> None:
        pass
