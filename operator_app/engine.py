"""From an image event to decisions: which containers move, to what, and how.

The engine only decides. What to do with a decision (open an UpdateRequest, or queue the apply
task) is the dispatcher's job, so the same code runs in the operator, in tests and in benchmarks.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

from . import metrics
from .cache import WorkloadCache
from .core.events import ImagePushEvent
from .core.images import InvalidImageReference, parse_image
from .core.policy import Decision, InvalidPolicy, Policy, PolicySpec, choose_target, decide_digest
from .workloads import ContainerImage, WorkloadProjection

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UpdatePlan:
    """One container of one workload that should move to ``new_image``."""

    workload: WorkloadProjection
    container: str
    current_image: str
    new_image: str
    new_digest: str | None
    spec: PolicySpec
    reason: str
    source: str


class Dispatcher(Protocol):
    def propose(self, plan: UpdatePlan) -> None: ...

    def apply(self, plan: UpdatePlan) -> None: ...


class Engine:
    def __init__(self, cache: WorkloadCache, dispatcher: Dispatcher) -> None:
        self.cache = cache
        self.dispatcher = dispatcher
        self._specs: dict[tuple, PolicySpec | InvalidPolicy] = {}

    def handle(self, event: ImagePushEvent) -> list[UpdatePlan]:
        started = time.perf_counter()
        metrics.EVENTS_PROCESSED.labels(event.source).inc()
        plans = []
        for workload, container in self.cache.matches(event.repository):
            plan = self.decide(event, workload, container)
            if plan is None:
                continue
            plans.append(plan)
            if plan.spec.require_approval:
                self.dispatcher.propose(plan)
            else:
                self.dispatcher.apply(plan)
        metrics.DECISION_SECONDS.observe(time.perf_counter() - started)
        return plans

    def decide(self, event: ImagePushEvent, workload: WorkloadProjection,
               container: ContainerImage) -> UpdatePlan | None:
        labels = (workload.kind, workload.namespace)
        spec = self._spec(workload)
        if isinstance(spec, InvalidPolicy):
            metrics.DECISIONS.labels(*labels, "invalid_policy").inc()
            return None
        if not spec.accepts_source(event.source):
            metrics.DECISIONS.labels(*labels, "source_ignored").inc()
            return None
        if not spec.applies_to_container(container.name):
            return None
        try:
            current = parse_image(container.image)
        except InvalidImageReference:
            return None
        decision = _decide(spec, current.effective_tag or "latest", current.digest, event)
        if decision is None:
            metrics.DECISIONS.labels(*labels, "unchanged").inc()
            return None
        # Keep a digest pin when the user pinned one (and we know the new digest).
        digest = decision.digest or (event.digest if current.digest else None)
        new_image = current.with_tag(decision.tag, digest)
        if new_image == container.image:
            metrics.DECISIONS.labels(*labels, "unchanged").inc()
            return None
        outcome = "approval" if spec.require_approval else "update"
        metrics.DECISIONS.labels(*labels, outcome).inc()
        log.info("%s %s/%s container %s: %s (%s)", workload.kind, workload.namespace,
                 workload.name, container.name, decision.reason, outcome)
        return UpdatePlan(workload, container.name, container.image, new_image,
                          event.digest, spec, decision.reason, str(event.source))

    def _spec(self, workload: WorkloadProjection) -> PolicySpec | InvalidPolicy:
        """Parsed once per annotation set: 10,000 workloads often share a handful."""
        cached = self._specs.get(workload.annotations)
        if cached is None:
            try:
                cached = PolicySpec.from_annotations(workload.annotation_map)
            except InvalidPolicy as exc:
                log.warning("%s %s/%s: %s", workload.kind, workload.namespace, workload.name, exc)
                cached = exc
            if len(self._specs) > 10_000:
                self._specs.clear()
            self._specs[workload.annotations] = cached
        return cached


def _decide(spec: PolicySpec, current_tag: str, current_digest: str | None,
            event: ImagePushEvent) -> Decision | None:
    if spec.policy is Policy.DIGEST:
        if event.tag != current_tag or not event.digest:
            return None
        if current_digest is None:
            return Decision(tag=current_tag, digest=event.digest,
                            reason=f"digest policy: pin {current_tag} to {event.digest[:19]}")
        return decide_digest(current_digest, event.digest, tag=current_tag)
    return choose_target(spec, current_tag, [event.tag])
