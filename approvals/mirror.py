"""The ``UpdateRequest`` table follows the custom resources.

:class:`UpdateRequestMirror` lists every UpdateRequest in the cluster, then watches them: ADDED
and MODIFIED upsert the row by uid, DELETED removes it, and every (re)list deletes rows whose uid
was not listed. It runs on every operator replica; all writes are idempotent upserts.

The services call :func:`upsert` with the object the API server returned after an action, so the
row is current before the watch event arrives. An older event (lower resourceVersion) never
overwrites a newer row. Every change is broadcast to the dashboard (``approvals.live``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime

from django.db import IntegrityError, close_old_connections, transaction
from django.utils.dateparse import parse_datetime

from operator_app.cache import ListWatcher
from operator_app.proposals import API_VERSION, PLURAL, phase_of

from .models import Phase, UpdateRequest

log = logging.getLogger(__name__)

PATH = f"/apis/{API_VERSION}/{PLURAL}"

_CHAR_FIELDS = {f.name: f.max_length for f in UpdateRequest._meta.get_fields()
                if getattr(f, "max_length", None)}


def _time(text) -> datetime | None:
    if not text or not isinstance(text, str):
        return None
    try:
        return parse_datetime(text)
    except ValueError:
        return None


def _int(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def fields_of(obj: dict) -> dict:
    """The row's fields from a custom resource (missing parts become empty values)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    ref = spec.get("targetRef") or {}
    chart = spec.get("chart") if isinstance(spec.get("chart"), dict) else {}
    phase = phase_of(obj)
    approvals = status.get("approvals") if isinstance(status.get("approvals"), list) else []
    values = {
        "namespace": meta.get("namespace", ""),
        "name": meta.get("name", ""),
        "uid": meta.get("uid", ""),
        "resource_version": meta.get("resourceVersion", ""),
        "target_api_version": ref.get("apiVersion", ""),
        "target_kind": ref.get("kind", ""),
        "target_name": ref.get("name", ""),
        "container": spec.get("containerName", ""),
        "current_image": spec.get("currentImage", ""),
        "new_image": spec.get("newImage", ""),
        "new_digest": spec.get("newDigest", ""),
        "chart_name": str(chart.get("name") or ""),
        "chart_source": str(chart.get("sourceURL") or ""),
        "current_version": str(chart.get("currentVersion") or ""),
        "new_version": str(chart.get("newVersion") or ""),
        "policy": spec.get("policy", ""),
        "reason": spec.get("reason", "") or "",
        "source": spec.get("source", "") or "",
        "phase": phase if phase in Phase.values else Phase.PENDING,
        "approvals_required": max(1, _int(spec.get("approvalsRequired"), 1)),
        "approvals": approvals,
        "approved_by": status.get("approvedBy", "") or "",
        "approved_at": _time(status.get("approvedAt")),
        "rejected_by": status.get("rejectedBy", "") or "",
        "rejected_at": _time(status.get("rejectedAt")),
        "superseded_by": status.get("supersededBy", "") or "",
        "message": status.get("message", "") or "",
        "created_at": _time(meta.get("creationTimestamp")),
        "expires_at": _time(spec.get("expiresAt")),
        "completed_at": _time(status.get("completedAt")),
        "scheduled_for": _time(status.get("scheduledFor")),
        "status_updated_at": _time(status.get("lastUpdated")),
    }
    for name, limit in _CHAR_FIELDS.items():
        value = values.get(name)
        if isinstance(value, str) and len(value) > limit:
            values[name] = value[:limit]
    return values


def _older(incoming: str, stored: str) -> bool:
    """Is ``incoming`` an older resourceVersion than ``stored``?

    resourceVersions are opaque to clients, but the API server's are etcd revisions; they are
    compared only when both are integers, otherwise the incoming object wins.
    """
    if not (incoming.isdigit() and stored.isdigit()):
        return False
    return int(incoming) < int(stored)


def broadcast(row: UpdateRequest) -> None:
    """Tell open dashboards; the dashboard module is optional and its failures are not ours."""
    try:
        from . import live
    except ImportError:
        return
    try:
        live.broadcast(row)
    except Exception as exc:  # noqa: BLE001 - a channel-layer hiccup must not stop the mirror
        log.debug("live broadcast of %s failed: %s", row, exc)


def unsaved(obj: dict) -> UpdateRequest:
    """The row ``obj`` would give, not written (to answer with when the database is busy)."""
    values = fields_of(obj)
    return UpdateRequest(**values)


def upsert(obj: dict, *, notify: bool = True) -> UpdateRequest | None:
    """Create or update the row for ``obj``; returns it (None when the object is unusable)."""
    values = fields_of(obj)
    if not values["uid"] or not values["name"] or values["created_at"] is None:
        log.warning("UpdateRequest without uid, name or creationTimestamp ignored: %s",
                    (obj.get("metadata") or {}).get("name"))
        return None
    uid = values.pop("uid")
    for attempt in (1, 2):
        try:
            row, changed = _write(uid, values)
            break
        except IntegrityError:  # another process created it between our read and write
            if attempt == 2:
                raise
    if notify and changed:
        broadcast(row)
    return row


def _write(uid: str, values: dict) -> tuple[UpdateRequest, bool]:
    with transaction.atomic():
        row = UpdateRequest.objects.select_for_update().filter(uid=uid).first()
        if row is not None:
            if row.resource_version == values["resource_version"]:
                return row, False
            if _older(values["resource_version"], row.resource_version):
                return row, False
            for name, value in values.items():
                setattr(row, name, value)
            row.save()
            return row, True
        # Same name, other uid: the old object was deleted and recreated before we saw it.
        UpdateRequest.objects.filter(namespace=values["namespace"],
                                     name=values["name"]).exclude(uid=uid).delete()
        return UpdateRequest.objects.create(uid=uid, **values), True


def _remove(rows) -> int:
    count = 0
    for row in rows:
        row.delete()
        row.deleted = True  # the instance keeps its fields for the broadcast
        broadcast(row)
        count += 1
    return count


def delete(obj: dict) -> None:
    uid = (obj.get("metadata") or {}).get("uid", "")
    if uid:
        _remove(UpdateRequest.objects.filter(uid=uid))


def delete_row(namespace: str, name: str) -> None:
    """Drop the row of an object found missing on the cluster."""
    _remove(UpdateRequest.objects.filter(namespace=namespace, name=name))


def replace(objects: Iterable[dict]) -> tuple[int, int]:
    """Make the table equal to ``objects`` (a full listing); returns (upserted, deleted)."""
    known = dict(UpdateRequest.objects.values_list("uid", "resource_version"))
    seen: set[str] = set()
    changed = 0
    for obj in objects:
        meta = obj.get("metadata") or {}
        uid = meta.get("uid", "")
        if not uid:
            continue
        seen.add(uid)
        if known.get(uid) == meta.get("resourceVersion"):
            continue
        if upsert(obj) is not None:
            changed += 1
    gone = [uid for uid in known if uid not in seen]
    removed = 0
    for start in range(0, len(gone), 500):
        removed += _remove(UpdateRequest.objects.filter(uid__in=gone[start:start + 500]))
    return changed, removed


class UpdateRequestMirror(ListWatcher):
    """Keeps ``approvals.models.UpdateRequest`` equal to the cluster's UpdateRequests."""

    def __init__(self, api, stop: threading.Event) -> None:
        super().__init__(api, PATH, "UpdateRequest", stop)

    def replace(self, objects: Iterator[dict]) -> None:
        close_old_connections()
        changed, removed = replace(objects)
        log.info("UpdateRequest mirror in step: %d rows changed, %d removed", changed, removed)

    def apply_event(self, event_type: str, obj: dict) -> None:
        # A database error propagates: the base class backs off and re-lists, so the event
        # that could not be written is not lost.
        close_old_connections()
        if event_type == "DELETED":
            delete(obj)
        elif event_type in ("ADDED", "MODIFIED"):
            upsert(obj)

    def run(self) -> None:
        try:
            super().run()
        finally:
            close_old_connections()
