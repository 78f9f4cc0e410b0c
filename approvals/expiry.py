"""Expiring unanswered UpdateRequests: the leader's periodic work for the approvals app."""

from __future__ import annotations

import logging

from django.db import close_old_connections

from . import services

log = logging.getLogger(__name__)


def expire(api) -> list[str]:
    """Mark overdue Pending requests Expired (``services.expire_overdue``), with fresh database
    connections, as a long-running thread needs."""
    close_old_connections()
    try:
        expired = services.expire_overdue(api)
    finally:
        close_old_connections()
    if expired:
        log.info("expired %d UpdateRequests: %s", len(expired), ", ".join(expired))
    return expired
