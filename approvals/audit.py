"""The audit trail: an ``AuditEvent`` row plus one JSON log line per decision or login failure.

Every approve, reject, rollback, expiry and failed login goes through :func:`record`, whatever
the interface (admin, dashboard, API). The log line goes to the ``headwind.audit`` logger so it
can be shipped separately; passwords never reach it (only the attempted username is kept).
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

from django.contrib.auth.signals import user_login_failed
from django.db import DatabaseError
from django.dispatch import receiver

from .models import AuditEvent

log = logging.getLogger("headwind.audit")

SUCCESS = "success"
REFUSED = "refused"
ERROR = "error"

_MAX_ACTOR = 253
_MAX_TARGET = 512
_MAX_REASON = 2000
_ATTEMPTS = 4


def record(
    actor: str,
    action: str,
    target: str = "",
    result: str = SUCCESS,
    reason: str = "",
    **details,
) -> AuditEvent | None:
    """Store and log one audit event; a database failure is logged, never raised."""
    actor = (actor or "anonymous")[:_MAX_ACTOR]
    target = (target or "")[:_MAX_TARGET]
    reason = (reason or "")[:_MAX_REASON]
    details = {key: value for key, value in details.items() if value not in (None, "")}
    line = {
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "event": "audit",
        "actor": actor,
        "action": action,
        "target": target,
        "result": result,
        "reason": reason,
        **details,
    }
    log.info("%s", json.dumps(line, default=str, sort_keys=False, ensure_ascii=False))
    stored = json.loads(json.dumps(details, default=str))
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            return AuditEvent.objects.create(actor=actor, action=action, target=target,
                                             result=result, reason=reason, details=stored)
        except DatabaseError as exc:
            if attempt == _ATTEMPTS:
                log.error("could not store the audit event (%s %s %s): %s", actor, action,
                          target, exc)
                return None
            time.sleep(0.2 * attempt)  # a busy database: the event matters more than speed
    return None


def client_address(request) -> str:
    """See :func:`approvals.auth.client_address` (X-Forwarded-For through trusted proxies)."""
    from .auth import client_address as address

    return address(request) if request else ""


@receiver(user_login_failed, dispatch_uid="headwind-audit-login-failed")
def _login_failed(sender, credentials=None, request=None, **kwargs) -> None:
    """Django calls this with cleansed credentials; only the username is kept."""
    credentials = credentials or {}
    username = ""
    for key in ("username", "email", "remote_user"):
        value = credentials.get(key)
        if isinstance(value, str) and value:
            username = value
            break
    via = getattr(request, "headwind_auth_via", "") if request is not None else ""
    if not via and request is not None:
        via = "oidc" if "/oidc/" in getattr(request, "path", "") else "login"
    record(username or "anonymous", "login_failed", result=REFUSED,
           reason="invalid credentials", via=via, remote_addr=client_address(request))
