"""From an image event to decisions: which containers move, to what, and how.

The engine only decides. What to do with a decision (open an UpdateRequest, or queue the apply
task) is the dispatcher's job, so the same code runs in the operator, in tests and in benchmarks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from . import metrics
from .cache import WorkloadCache
from .core.charts import ChartRef, version_from_oci_tag
from .core.events import EventSource, ImagePushEvent
from .core.policy import InvalidPolicy, PolicySpec, decide, old_enough
from .core.windows import format_duration
from .workloads import ContainerImage, WorkloadProjection, parse_artifact

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


#: repository -> {tag: when it was released} (the tag book), for headwind.sh/min-release-age.
ReleaseTimes = Callable[[str], Mapping[str, datetime]]


class Engine:
    """``released`` says when each tag of a repository was released; without it (tests,
    benchmarks) a ``headwind.sh/min-release-age`` holds every candidate back."""

    def __init__(self, cache: WorkloadCache, dispatcher: Dispatcher, *,
                 released: ReleaseTimes | None = None) -> None:
        self.cache = cache
        self.dispatcher = dispatcher
        self.released = released or (lambda repository: {})
        self._specs: dict[tuple, PolicySpec | InvalidPolicy] = {}

    def handle(self, event: ImagePushEvent) -> list[UpdatePlan]:
        """One pushed tag (webhook): each matching container decides on that tag alone."""
        return self.handle_candidates(event.repository, {event.tag: event.digest}, event.source)

    def handle_candidates(self, repository: str, candidates: Mapping[str, str | None],
                          source: str, *, only: set[tuple[str, str, str]] | None = None,
                          ) -> list[UpdatePlan]:
        """Tags (and digests, where known) that exist in ``repository``: the poller's view.

        Each matching container picks its single best target among all of them, so a patch-
        policy workload and a minor-policy workload on the same repository each get one plan.
        ``only`` restricts to the given workload keys (those whose polling interval is due).
        """
        started = time.perf_counter()
        metrics.EVENTS_PROCESSED.labels(str(source)).inc()
        plans = []
        released: Mapping[str, datetime] | None = None
        for workload, container in self.cache.matches(repository):
            if only is not None and workload.key not in only:
                continue
            if released is None and self._spec_ages(workload):
                released = self.released(repository)
            plan = self.decide(candidates, source, workload, container, released=released)
            if plan is None:
                continue
            plans.append(plan)
            if plan.spec.require_approval:
                self.dispatcher.propose(plan)
            else:
                self.dispatcher.apply(plan)
        metrics.DECISION_SECONDS.observe(time.perf_counter() - started)
        return plans

    def _spec_ages(self, workload: WorkloadProjection) -> bool:
        spec = self._spec(workload)
        return isinstance(spec, PolicySpec) and spec.min_release_age_seconds > 0

    def decide(self, candidates: Mapping[str, str | None], source: str,
               workload: WorkloadProjection, container: ContainerImage, *,
               released: Mapping[str, datetime] | None = None) -> UpdatePlan | None:
        labels = (workload.kind, workload.namespace)
        spec = self._spec(workload)
        if isinstance(spec, InvalidPolicy):
            metrics.DECISIONS.labels(*labels, "invalid_policy").inc()
            return None
        if not spec.accepts_source(EventSource(source)):
            metrics.DECISIONS.labels(*labels, "source_ignored").inc()
            return None
        if not spec.applies_to_container(container.name):
            return None
        if container.name in spec.held:
            metrics.DECISIONS.labels(*labels, "held").inc()
            return None
        try:
            current = parse_artifact(workload.kind, container.image)
        except ValueError:
            return None
        if isinstance(current, ChartRef):
            if current.is_oci:  # Helm writes a version's "+" as "_" in OCI tags.
                candidates = {version_from_oci_tag(tag): None for tag in candidates}
            metrics.HELM_CHART_VERSIONS_CHECKED.labels(workload.namespace).inc(len(candidates))
        if spec.min_release_age_seconds:
            released = released if released is not None else {}
            young = [tag for tag in candidates if not old_enough(spec, released.get(tag), None)]
        else:
            young = []
        decision = decide(spec, current, candidates, slot=container.name, released=released)
        if decision is None or decision.image == container.image:
            outcome = "too_young" if young and decide(
                spec, current, candidates, slot=container.name) is not None else "unchanged"
            metrics.DECISIONS.labels(*labels, outcome).inc()
            if outcome == "too_young":
                log.info("%s %s/%s container %s: %s not yet %s old (%s)", workload.kind,
                         workload.namespace, workload.name, container.name, ", ".join(young),
                         format_duration(spec.min_release_age_seconds),
                         "headwind.sh/min-release-age")
            return None
        outcome = "approval" if spec.require_approval else "update"
        metrics.DECISIONS.labels(*labels, outcome).inc()
        if isinstance(current, ChartRef):
            metrics.HELM_UPDATES_FOUND.labels(workload.namespace).inc()
        log.info("%s %s/%s container %s: %s (%s)", workload.kind, workload.namespace,
                 workload.name, container.name, decision.reason, outcome)
        return UpdatePlan(workload, container.name, container.image, decision.image,
                          decision.digest, spec, decision.reason, str(source))

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

