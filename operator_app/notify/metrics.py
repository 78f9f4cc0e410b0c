"""Prometheus metrics of notifications (in the style of ``operator_app/metrics.py``).

Deliveries happen in the Celery worker, so the worker's listener
(``HEADWIND_WORKER_METRICS_PORT``, 9091) is where these move; the admin's test button counts in
the web process (``/metrics``) with ``event="test"``. ``channel`` is ``slack``, ``teams`` or
``webhook`` (a team's own Secret-held URL counts under its channel); ``event`` is a notice's
event, ``summary`` for a storm summary or ``test``.
"""

from __future__ import annotations

from prometheus_client import Counter

NOTIFICATIONS_SENT = Counter(
    "headwind_notifications_sent_total",
    "Notifications a channel accepted (2xx).", ["channel", "event"])
NOTIFICATIONS_FAILED = Counter(
    "headwind_notifications_failed_total",
    "Notifications given up: a final refusal, attempts exhausted, a destination that could "
    "not be resolved, or a notice that could not be queued.", ["channel", "event"])
NOTIFICATIONS_HELD = Counter(
    "headwind_notifications_held_total",
    "Notifications folded into a storm summary instead of being sent on their own.",
    ["channel"])
