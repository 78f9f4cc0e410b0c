"""Kubernetes Events on the objects Headwind acts on, so ``kubectl describe`` shows what it did.

Best effort by design: an Event that cannot be written is logged and never fails the action it
describes.
"""

from __future__ import annotations

import logging
import socket
import time
from datetime import UTC, datetime

from .kube import KubeError, request

log = logging.getLogger(__name__)

COMPONENT = "headwind"
_MESSAGE_MAX = 1024


def record_event(api, *, api_version: str, kind: str, namespace: str, name: str,
                 uid: str | None, event_type: str, reason: str, message: str) -> None:
    """A core/v1 Event (``Normal`` or ``Warning``) on ``kind namespace/name``."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    involved = {"apiVersion": api_version, "kind": kind, "namespace": namespace, "name": name}
    if uid:
        involved["uid"] = uid
    body = {
        "metadata": {"name": f"{name[:200]}.{time.time_ns():x}", "namespace": namespace},
        "involvedObject": involved,
        "type": event_type,
        "reason": reason,
        "message": message[:_MESSAGE_MAX],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": socket.gethostname()[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    try:
        request(api, "POST", f"/api/v1/namespaces/{namespace}/events", body=body)
    except KubeError as exc:
        log.warning("could not record Event %s on %s %s/%s: %s", reason, kind, namespace, name,
                    exc)
