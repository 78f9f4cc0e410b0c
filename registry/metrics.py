"""Prometheus metrics of registry polling (exported by whichever process runs the poller) and
of webhook verification (``run_operator``). Every metric: docs/metrics.md."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

POLL_CYCLES = Counter("headwind_polling_cycles_total", "Poll cycles run (Poller.run_once).")
POLL_REQUESTS = Counter(
    "headwind_polling_requests_total",
    "HTTP requests to registries and chart repositories by the poller: kind tags|head|"
    "manifest|blob|token|index, outcome ok|not_modified|redirect|unauthorized|forbidden|"
    "not_found|rate_limited|server_error|client_error|connection_error.",
    ["registry", "kind", "outcome"],
)
NEW_TAGS = Counter(
    "headwind_polling_new_tags_found_total",
    "Tags seen in a listing that the previous listing of the same repository did not have.",
    ["registry"],
)
IMAGES_CHECKED = Counter(
    "headwind_polling_images_checked_total",
    "Due containers whose repository a poll read (one per container and poll; failed reads "
    "count as headwind_polling_errors_total instead).",
    ["registry"],
)
HELM_CHARTS_CHECKED = Counter(
    "headwind_polling_helm_charts_checked_total",
    "Due HelmReleases whose chart repository a poll read (index.yaml or OCI tag list).",
    ["registry"],
)
HELM_NEW_VERSIONS = Counter(
    "headwind_polling_helm_new_versions_found_total",
    "Chart versions seen in a repository that its previous read did not have.",
    ["registry"],
)
POLL_ERRORS = Counter(
    "headwind_polling_errors_total",
    "Repository polls that failed (auth, not found, rate limit, server or connection error).",
    ["registry"],
)
BACKOFFS = Counter(
    "headwind_polling_backoffs_total",
    "Times a registry host was put into backoff (429, 5xx or connection failure).",
    ["registry"],
)
CYCLE_SECONDS = Histogram(
    "headwind_polling_cycle_seconds",
    "Wall time of one poll cycle.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
RATELIMIT_REMAINING = Gauge(
    "headwind_registry_ratelimit_remaining",
    "Last RateLimit-Remaining a registry reported (Docker Hub sends it).",
    ["registry"],
)
VERIFICATIONS = Counter(
    "headwind_webhook_verifications_total",
    "Webhook events checked against their registry (verified, mismatch, missing, "
    "not_yet_found, unreachable, unverifiable, error).",
    ["registry", "outcome"],
)
