"""Periodic approval work: expiring unanswered requests, and re-queueing approved ones that
never reached the apply task.

The operator's leader runs :class:`ExpiryLoop` every ``HEADWIND_EXPIRY_INTERVAL`` seconds
(default 60).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, close_old_connections

from operator_app import kube

log = logging.getLogger(__name__)

class ExpiryLoop(threading.Thread):
    """Runs ``services.expire_overdue`` and ``services.resume_approved`` while ``is_leader()``
    says this replica leads."""

    def __init__(self, api, stop: threading.Event, is_leader: Callable[[], bool],
                 interval: float | None = None) -> None:
        super().__init__(name="approval-expiry", daemon=True)
        self.api = api
        self.stop_event = stop
        self.is_leader = is_leader
        self.interval = interval or settings.HEADWIND.expiry_interval
        self.runs = 0

    def run(self) -> None:
        from . import services

        try:
            while not self.stop_event.wait(self.interval):
                if not self.is_leader():
                    continue
                close_old_connections()
                try:
                    expired = services.expire_overdue(self.api)
                    resumed = services.resume_approved(self.api)
                except (kube.KubeError, DatabaseError) as exc:
                    log.warning("expiring overdue UpdateRequests failed: %s", exc)
                    continue
                except Exception:  # noqa: BLE001 - the loop must outlive one bad pass
                    log.exception("expiring overdue UpdateRequests failed")
                    continue
                self.runs += 1
                if expired:
                    log.info("expired %d UpdateRequests: %s", len(expired), ", ".join(expired))
                if resumed:
                    log.warning("re-queued %d approved UpdateRequests that were never applied: "
                                "%s", len(resumed), ", ".join(resumed))
        finally:
            close_old_connections()
