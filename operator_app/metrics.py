"""Prometheus metrics of the update path. Names follow the original operator where they fit.

Each process exports what it does: the web process at ``/metrics``; ``run_operator`` and the
Celery worker on their own ports (``HEADWIND_OPERATOR_METRICS_PORT``, default 9090, and
``HEADWIND_WORKER_METRICS_PORT``, default 9091; ``0`` turns the listener off).
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

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
    "Per matching container: update, approval, unchanged, held, source_ignored, "
    "invalid_policy.",
    ["kind", "namespace", "outcome"],
)
DECISION_SECONDS = Histogram(
    "headwind_event_decision_seconds",
    "Time from an event to all its decisions (index lookup and policy).",
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
