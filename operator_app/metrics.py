"""Prometheus metrics of the update path. Names follow the original operator where they fit.

Each process exports what it does: the web process at ``/metrics``; ``run_operator`` and the
Celery worker on their own ports (``HEADWIND_OPERATOR_METRICS_PORT``, default 9090, and
``HEADWIND_WORKER_METRICS_PORT``, default 9091; ``0`` turns the listener off). Every metric,
with its labels and the process that moves it: docs/metrics.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

# The notify code imports its metrics only when it first counts; importing them here registers
# them at start, so every process lists the notification families (docs/metrics.md).
from .notify import metrics as notify_metrics  # noqa: F401

log = logging.getLogger(__name__)

WEBHOOK_EVENTS = Counter(
    "headwind_webhook_events_total",
    "Registry webhook requests by source and outcome "
    "(accepted, ignored, rejected_auth, rejected_invalid).",
    ["source", "outcome"],
)
EVENTS_PROCESSED = Counter(
    "headwind_events_processed_total", "Image events the engine consumed.", ["source"]
)
DECISIONS = Counter(
    "headwind_decisions_total",
    "Per matching container: update, approval, unchanged, held, too_young "
    "(headwind.sh/min-release-age), source_ignored, invalid_policy.",
    ["kind", "namespace", "outcome"],
)
DECISION_SECONDS = Histogram(
    "headwind_event_decision_seconds",
    "Time from taking an event to having acted on all its decisions (index lookup, policy, "
    "release times, and dispatch: an UpdateRequest written or an update queued).",
    buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0),
)
UPDATE_REQUESTS_CREATED = Counter(
    "headwind_update_requests_created_total", "UpdateRequests created.", ["kind", "namespace"]
)
UPDATE_REQUESTS_SUPERSEDED = Counter(
    "headwind_update_requests_superseded_total",
    "Pending UpdateRequests replaced by a newer proposal.",
    ["kind", "namespace"],
)
UPDATES_APPLIED = Counter(
    "headwind_updates_applied_total", "Workload images patched.", ["kind", "namespace"]
)
UPDATES_FAILED = Counter(
    "headwind_updates_failed_total", "Updates that failed (recorded with a reason).",
    ["kind", "namespace"],
)
UPDATES_SKIPPED_INTERVAL = Counter(
    "headwind_updates_skipped_interval_total",
    "Updates deferred by headwind.sh/min-update-interval.",
    ["kind", "namespace"],
)
WATCHED = Gauge("headwind_workloads_watched", "Opted-in workloads in the cache.", ["kind"])
WATCH_RESTARTS = Counter(
    "headwind_watch_restarts_total",
    "Watch streams restarted, by watched collection and reason (expired, error).",
    ["collection", "reason"],
)
LEADER = Gauge("headwind_leader", "1 while this process holds the leader Lease.")
EVENT_ERRORS = Counter(
    "headwind_event_errors_total",
    "Stream events whose handling failed: retried (left pending, claimed again) or dropped "
    "(after 10 deliveries).", ["outcome"])


# --- Approvals (the seed's names where it had them) ------------------------------------------
UPDATES_APPROVED = Counter(
    "headwind_updates_approved_total",
    "UpdateRequests approved (enough proven approvals; the update is queued).",
    ["kind", "namespace"])
UPDATES_REJECTED = Counter(
    "headwind_updates_rejected_total", "UpdateRequests rejected.", ["kind", "namespace"])
UPDATE_REQUESTS_EXPIRED = Counter(
    "headwind_update_requests_expired_total",
    "Pending UpdateRequests that expired before enough approvals.", ["kind", "namespace"])
APPROVAL_WAIT_SECONDS = Histogram(
    "headwind_approval_wait_seconds",
    "From an UpdateRequest's creation to the decision that ended its wait (approved, rejected).",
    ["outcome"],
    buckets=(10, 30, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400))


# --- Flux HelmReleases (the seed's names) --------------------------------------------------
HELM_RELEASES_WATCHED = Gauge("headwind_helm_releases_watched",
                              "Opted-in HelmReleases whose chart Headwind follows.")
HELM_CHART_VERSIONS_CHECKED = Counter(
    "headwind_helm_chart_versions_checked_total",
    "Chart versions weighed against a HelmRelease's policy.", ["namespace"])
HELM_UPDATES_FOUND = Counter(
    "headwind_helm_updates_found_total", "Chart updates decided (proposed or queued).",
    ["namespace"])
HELM_UPDATES_APPLIED = Counter(
    "headwind_helm_updates_applied_total", "Chart versions written.", ["namespace"])
HELM_REPOSITORY_QUERIES = Counter(
    "headwind_helm_repository_queries_total",
    "Chart repository reads (index.yaml fetches, OCI tag lists) by repository type and outcome "
    "(ok, not_modified, error).", ["type", "outcome"])
HELM_REPOSITORY_ERRORS = Counter(
    "headwind_helm_repository_errors_total", "Chart repository reads that failed.", ["type"])
HELM_REPOSITORY_QUERY_SECONDS = Histogram(
    "headwind_helm_repository_query_duration_seconds",
    "Chart repository reads (index.yaml fetches, OCI tag lists), failed ones included.",
    ["type"], buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))


# --- Rollouts and rollbacks (the seed's names, plus the outcome of each followed rollout) ----
ROLLOUTS = Counter(
    "headwind_rollouts_total",
    "Followed rollouts by outcome (succeeded, failed, superseded).", ["kind", "namespace",
                                                                      "outcome"])
ROLLOUTS_WATCHED = Gauge("headwind_rollouts_watched", "Rollouts the leader is following now.")
HEALTH_CHECKS = Counter(
    "headwind_deployment_health_checks_total",
    "Rollout checks (a target's status and its new pods read once).", ["kind"])
HEALTH_FAILURES = Counter(
    "headwind_deployment_health_failures_total",
    "Rollout checks that saw a failure (a status failure or a pod signal).", ["kind"])
ROLLBACKS = Counter("headwind_rollbacks_total", "Rollbacks applied.", ["kind", "namespace"])
ROLLBACKS_MANUAL = Counter(
    "headwind_rollbacks_manual_total", "Rollbacks people asked for, applied.", ["namespace"])
ROLLBACKS_AUTOMATIC = Counter(
    "headwind_rollbacks_automatic_total", "Rollbacks of failed rollouts, applied.",
    ["namespace"])
ROLLBACKS_FAILED = Counter(
    "headwind_rollbacks_failed_total",
    "Rollbacks not applied (refused, or the target changed meanwhile).", ["namespace"])
ROLLBACK_SECONDS = Histogram(
    "headwind_rollback_seconds",
    "From the check that saw a rollout fail to the rollback patch.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0))


# --- Pending UpdateRequests: read from the mirror when scraped ------------------------------
#: (target kind, namespace, how many, creation of the oldest) per group of Pending requests.
PendingCounts = Callable[[], Iterable[tuple[str, str, int, "datetime | None"]]]


class PendingRequests:
    """``headwind_updates_pending`` and ``headwind_updates_pending_oldest_seconds``, asked of
    ``source`` at every scrape, so they are never stale. ``run_operator`` sets the source (the
    UpdateRequest mirror, ``approvals.services.pending_counts``); other processes export the two
    families empty. A group with nothing pending has no series."""

    def __init__(self) -> None:
        self.source: PendingCounts | None = None

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (GaugeMetricFamily("headwind_updates_pending",
                                  "Pending UpdateRequests (waiting for approval).",
                                  labels=["kind", "namespace"]),
                GaugeMetricFamily("headwind_updates_pending_oldest_seconds",
                                  "Age of the oldest Pending UpdateRequest.",
                                  labels=["kind", "namespace"]))

    def describe(self):
        return list(self._families())

    def collect(self):
        pending, oldest = self._families()
        if self.source is not None:
            now = datetime.now(UTC)
            try:
                rows = list(self.source())
            except Exception as exc:  # noqa: BLE001 - a scrape must outlive the database
                log.warning("pending UpdateRequests not counted: %s", exc)
                rows = []
            for kind, namespace, count, created in rows:
                pending.add_metric([kind, namespace], count)
                if created is not None:
                    if created.tzinfo is None:
                        created = created.replace(tzinfo=UTC)
                    oldest.add_metric([kind, namespace], max(0.0, (now - created).total_seconds()))
        yield pending
        yield oldest


PENDING_REQUESTS = PendingRequests()
REGISTRY.register(PENDING_REQUESTS)


def request_decided(obj: dict, outcome: str, now: datetime | None = None) -> None:
    """Count an UpdateRequest (the custom resource) that stopped waiting: ``approved``,
    ``rejected`` or ``expired``; for the first two, observe how long it waited."""
    from .proposals import parse_rfc3339  # proposals imports this module

    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    labels = ((spec.get("targetRef") or {}).get("kind", ""), meta.get("namespace", ""))
    counter = {"approved": UPDATES_APPROVED, "rejected": UPDATES_REJECTED,
               "expired": UPDATE_REQUESTS_EXPIRED}[outcome]
    counter.labels(*labels).inc()
    created = parse_rfc3339(meta.get("creationTimestamp"))
    if outcome != "expired" and created is not None:
        waited = ((now or datetime.now(UTC)) - created).total_seconds()
        APPROVAL_WAIT_SECONDS.labels(outcome).observe(max(0.0, waited))


def time_chart_query(kind: str | None) -> AbstractContextManager:
    """Times a chart repository read as ``headwind_helm_repository_query_duration_seconds``
    (``kind`` http or oci); ``None`` (not a chart repository) times nothing."""
    return HELM_REPOSITORY_QUERY_SECONDS.labels(kind).time() if kind else nullcontext()


def serve(port: int) -> None:
    """Start a metrics listener unless the port is 0."""
    if port:
        start_http_server(port, addr="0.0.0.0")
        log.info("metrics on :%d/metrics", port)
APPROVALS_UNATTRIBUTED = Counter(
    "headwind_approvals_unattributed_total",
    "Approved UpdateRequests refused because nobody Headwind can attribute approved them.",
    ["namespace"],
)

#: Where a webhook-driven update's time goes (operator_app/hops.py): ``hop`` is the stamp a hop
#: ends at (queued, read, verified, decided, started, patched) or ``total`` (received →
#: patched). Observed by the worker when its patch is accepted.
UPDATE_HOP_SECONDS = Histogram(
    "headwind_update_hop_seconds",
    "Seconds per hop of a webhook-driven update, from the delivery to the patch.",
    ["hop"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
