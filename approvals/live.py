"""Live updates: the mirror tells every open dashboard that an UpdateRequest changed.

``broadcast(ur)`` is called by the mirror after it creates, updates or deletes a row, from a plain
thread of another process (``run_operator``). It sends a small notification to the Channels group
``updaterequests``; each browser then fetches the rows it shows through ordinary, authenticated
HTTP views, so what a person sees (and which buttons they get) is always decided by the same
server-side code as a page load. The notification carries no more than the list already shows.

A channel-layer failure (Redis down, a full channel) is logged and swallowed: the mirror must
never stop because nobody is watching.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

log = logging.getLogger(__name__)

GROUP = "updaterequests"
EVENT_TYPE = "updaterequest.changed"  # handled by UpdatesConsumer.updaterequest_changed
CREATED, UPDATED, DELETED = "created", "updated", "deleted"
#: A Pending request without approvals created this recently is announced as new.
NEW_WITHIN = timedelta(minutes=2)
SEND_TIMEOUT_SECONDS = 5.0


def row_id(namespace: str, name: str) -> str:
    """The HTML id of a request's row: ``ur_<namespace>_<name>`` with ``.`` as ``__``.

    Kubernetes names never contain ``_``, so the id is unambiguous, and it needs no CSS escaping.
    """
    return f"ur_{namespace}_{name}".replace(".", "__")


def infer_event(ur) -> str:
    """``deleted`` for a row that is gone, ``created`` for a fresh Pending one, else ``updated``."""
    from .models import Phase, UpdateRequest

    if (getattr(ur, "deleted", False) or ur.pk is None
            or not UpdateRequest.objects.filter(pk=ur.pk).exists()):
        return DELETED
    created_at = getattr(ur, "created_at", None)
    if (ur.phase == Phase.PENDING and not ur.approvals and created_at is not None
            and timezone.now() - created_at < NEW_WITHIN):
        return CREATED
    return UPDATED


def payload(ur, event: str) -> dict:
    """What a browser is told: enough to find the row and write a toast, nothing more."""
    return {
        "event": event,
        "namespace": ur.namespace,
        "name": ur.name,
        "phase": ur.phase,
        "target": f"{ur.target_kind} {ur.target_name}",
        "new_image": ur.new_image,
        "row_id": row_id(ur.namespace, ur.name),
        "row_url": reverse("approvals:row", args=[ur.namespace, ur.name]),
        "detail_url": reverse("approvals:detail", args=[ur.namespace, ur.name]),
    }


def broadcast(ur, event: str | None = None) -> bool:
    """Tell open dashboards that ``ur`` changed; returns False (and logs) when that failed.

    ``event`` is ``created``, ``updated`` or ``deleted``; when omitted it is inferred from the
    database (a missing row is ``deleted``). Safe to call from any thread, sync or async.
    """
    try:
        message = {"type": EVENT_TYPE, "payload": payload(ur, event or infer_event(ur))}
        _sender().send(GROUP, message)
        return True
    except Exception as exc:  # noqa: BLE001 - the mirror must survive any channel-layer failure
        log.warning("live update for %s/%s not sent: %s: %s", getattr(ur, "namespace", "?"),
                    getattr(ur, "name", "?"), type(exc).__name__, exc)
        return False


class _Sender:
    """One event loop thread per process, so the channel layer keeps its Redis connections.

    ``async_to_sync`` would build a new event loop, and with it a new Redis connection, for every
    call; the mirror may send thousands of notifications after a resync.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="headwind-live",
                                       daemon=True)
        self.thread.start()

    def send(self, group: str, message: dict) -> None:
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        if layer is None:
            raise RuntimeError("no channel layer is configured (CHANNEL_LAYERS)")
        future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), self.loop)
        future.result(timeout=SEND_TIMEOUT_SECONDS)


_lock = threading.Lock()
_senders: dict[int, _Sender] = {}


def _sender() -> _Sender:
    pid = os.getpid()  # a forked child (a Celery prefork worker) needs its own loop thread
    with _lock:
        sender = _senders.get(pid)
        if sender is None:
            sender = _senders[pid] = _Sender()
        return sender
