"""Approve, reject and expire UpdateRequests: the one place that decides, for every interface.

Every action writes the custom resource first (through :func:`operator_app.proposals.
update_status`, the one writer of UpdateRequest status, guarded by the resourceVersion it read),
then updates the mirror row from the object the API server returned. Rules:

* only Pending requests can be approved or rejected (Conflict otherwise); Rejected is final;
* ``spec.approvalsRequired`` distinct people must approve before the phase becomes Approved
  (the same person twice is a Conflict);
* an approval re-checks that the request has not expired and that the workload still runs
  ``spec.currentImage`` (Conflict "stale" otherwise), then queues the Celery apply task, whose
  result lands in the request's status;
* who may act is decided by :mod:`approvals.permissions` (NotAllowed with a reason);
* every attempt, allowed or not, leaves an audit event.

Errors are the :mod:`approvals.errors` family; the edges map them to HTTP status codes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime

from django.db import DatabaseError, connections
from django.db.models import Count, Min
from django.utils import timezone

from operator_app import apply, attribution, kube, metrics, notify
from operator_app import proposals as ur
from operator_app.approved import command_for
from operator_app.proposals import PhaseConflict, StatusContention, phase_of, rfc3339
from operator_app.workloads import kind_of

from . import audit, cluster, mirror
from .errors import Conflict, InvalidInput, NotAllowed, NotFound, ServiceError, Unavailable
from .models import Phase, UpdateRequest
from .permissions import Actor, authorize
from .permissions import can_approve as _can_approve

log = logging.getLogger(__name__)

__all__ = ["Actor", "approve", "can_approve", "expire_overdue", "pending_counts", "reject"]

MAX_TEXT = 1000
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def can_approve(actor: Actor, namespace: str) -> tuple[bool, str]:
    """May ``actor`` approve or reject in ``namespace``? See :mod:`approvals.permissions`."""
    return _can_approve(actor, namespace)


# --------------------------------------------------------------------------------------------
# Public actions
# --------------------------------------------------------------------------------------------


def approve(actor: Actor, namespace: str, name: str, comment: str = "") -> UpdateRequest:
    """Add ``actor``'s approval; with enough distinct approvals the update is queued."""
    target = f"{namespace}/{name}"[:512]
    try:
        _check_names(namespace, name)
        comment = _text(comment, "comment", required=False)
        api = _api()
        obj = _write(api, namespace, name, _approval(api, actor, comment))
    except ServiceError as exc:
        _audit_refusal(actor, "approve", target, exc)
        raise
    phase = phase_of(obj)
    if phase == ur.Phase.APPROVED:
        metrics.request_decided(obj, "approved")
    # Queue first: the custom resource already says Approved, and a local database hiccup
    # below must not leave it approved but never applied.
    failed_row = _queue(actor, obj) if phase == ur.Phase.APPROVED else None
    row = failed_row or _mirror(obj)
    status = obj.get("status") or {}
    spec = obj.get("spec") or {}
    audit.record(actor.username, "approve", target, audit.SUCCESS,
                 status.get("message", ""), via=actor.via, phase=phase,
                 approvals=len(status.get("approvals") or []),
                 required=spec.get("approvalsRequired", 1), new_image=spec.get("newImage"),
                 comment=comment)
    _notify(api, obj, notify.Event.REQUEST_APPROVED, actor.username, comment,
            approvals=len(status.get("approvals") or []),
            required=int(spec.get("approvalsRequired") or 1))
    return row


def reject(actor: Actor, namespace: str, name: str, reason: str) -> UpdateRequest:
    """Reject a Pending request for good, with a reason."""
    target = f"{namespace}/{name}"[:512]
    try:
        _check_names(namespace, name)
        reason = _text(reason, "reason", required=True)
        api = _api()
        obj = _write(api, namespace, name, _rejection(api, actor, reason))
    except ServiceError as exc:
        _audit_refusal(actor, "reject", target, exc)
        raise
    metrics.request_decided(obj, "rejected")
    row = _mirror(obj)
    audit.record(actor.username, "reject", target, audit.SUCCESS, reason, via=actor.via,
                 new_image=(obj.get("spec") or {}).get("newImage"))
    _notify(api, obj, notify.Event.REQUEST_REJECTED, actor.username, reason)
    return row


def expire_overdue(api=None, now: datetime | None = None) -> list[str]:
    """Mark Pending requests whose ``spec.expiresAt`` has passed Expired; returns their names.

    Candidates come from the mirror; each is re-read and re-checked on the cluster first.
    """
    api = api or _api()
    now = now or timezone.now()
    expired = []
    candidates = (UpdateRequest.objects.filter(phase=Phase.PENDING, expires_at__lte=now)
                  .order_by("expires_at").values_list("namespace", "name"))
    for namespace, name in candidates:
        try:
            obj = ur.get(api, namespace, name)
        except kube.KubeError as exc:
            if exc.status == 404:
                mirror.delete_row(namespace, name)
                continue
            log.warning("expiry: cannot read UpdateRequest %s/%s: %s", namespace, name, exc)
            continue
        if phase_of(obj) != ur.Phase.PENDING or _expired(obj, now) is None:
            mirror.upsert(obj)
            continue
        if _mark_expired(api, obj) is not None:
            expired.append(f"{namespace}/{name}")
    return expired


def pending_counts() -> list[tuple[str, str, int, datetime | None]]:
    """(target kind, namespace, count, oldest creation) of the Pending requests in the mirror:
    the source of the ``headwind_updates_pending*`` gauges, asked on the metrics listener's own
    threads, so it closes the database connection it opened."""
    try:
        return list(UpdateRequest.objects.filter(phase=Phase.PENDING).order_by()
                    .values_list("target_kind", "namespace")
                    .annotate(count=Count("id"), oldest=Min("created_at")))
    finally:
        connections.close_all()


# --------------------------------------------------------------------------------------------
# Status changes (each runs inside proposals.update_status: re-asked after a conflict)
# --------------------------------------------------------------------------------------------


def _approval(api, actor: Actor, comment: str) -> Callable[[dict], dict]:
    authorized = False

    def change(obj: dict) -> dict:
        nonlocal authorized
        if not authorized:
            _authorize(actor, obj)
            authorized = True
        _require_pending(obj, "approved")
        _refuse_if_expired(api, obj)
        spec = obj.get("spec") or {}
        status = dict(obj.get("status") or {})
        approvals = [a for a in status.get("approvals") or [] if isinstance(a, dict)]
        approvers = [a.get("user", "") for a in approvals]
        required = max(1, int(spec.get("approvalsRequired") or 1))
        meta = obj["metadata"]
        if actor.username in approvers:
            raise Conflict(f"{actor.username} already approved {meta['namespace']}/"
                           f"{meta['name']}; it needs {required} different approvers")
        _require_current(api, obj)
        policy = attribution.ADMISSION.installed(api)
        if not attribution.attribute(obj, policy_installed=policy).proposed:
            raise Conflict("this request was not proposed by Headwind, and no admission policy "
                           "proves its author may change the target; it cannot be approved")
        now = rfc3339(datetime.now(UTC))
        entry = {"user": actor.username, "at": now}
        if comment:
            entry["comment"] = comment
        status["approvals"] = [*approvals, attribution.sign_approval(obj, entry)]
        proof = attribution.attribute({**obj, "status": status}, policy_installed=policy)
        if proof.approved:
            approvers = ", ".join(proof.approvers)
            status.update(phase=ur.Phase.APPROVED.value, approvedBy=approvers, approvedAt=now,
                          message=f"approved by {approvers}; update queued")
        else:
            status.update(phase=ur.Phase.PENDING.value, message=proof.reason())
        return status

    return change


def _rejection(api, actor: Actor, reason: str) -> Callable[[dict], dict]:
    authorized = False

    def change(obj: dict) -> dict:
        nonlocal authorized
        if not authorized:
            _authorize(actor, obj)
            authorized = True
        _require_pending(obj, "rejected")
        _refuse_if_expired(api, obj)
        status = dict(obj.get("status") or {})
        status.update(phase=ur.Phase.REJECTED.value, message=reason,
                      rejectedBy=actor.username, rejectedAt=rfc3339(datetime.now(UTC)))
        return status

    return change


def _write(api, namespace: str, name: str, change: Callable[[dict], dict]) -> dict:
    """``proposals.update_status`` with Kubernetes failures turned into service errors."""
    try:
        return ur.update_status(api, namespace, name, change)
    except StatusContention:
        raise Conflict(f"{namespace}/{name} kept changing; try again") from None
    except kube.KubeError as exc:
        if exc.status == 404:
            raise NotFound(f"no update request {namespace}/{name}") from None
        raise _unavailable(exc) from None


def _queue(actor: Actor, obj: dict) -> UpdateRequest | None:
    """Hand the approved update to the apply task; a failure to queue marks the request Failed."""
    from operator_app.tasks import queue_update

    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    try:
        queue_update(command_for(obj, actor.username))
        return None
    except Exception as exc:  # noqa: BLE001 - any broker failure: record it, do not hide it
        log.error("could not queue the approved update %s/%s: %s", namespace, name, exc)
        audit.record(actor.username, "approve", f"{namespace}/{name}", audit.ERROR,
                     f"approved, but the update could not be queued: {exc}", via=actor.via)
        try:
            failed = ur.set_phase(_api(), namespace, name, ur.Phase.FAILED,
                                  message=f"approved, but the update could not be queued: "
                                          f"{exc.__class__.__name__}",
                                  expect_phases={ur.Phase.APPROVED})
        except (PhaseConflict, StatusContention, kube.KubeError, ServiceError) as err:
            log.error("could not mark %s/%s Failed: %s", namespace, name, err)
            return None
        return mirror.upsert(failed)


def _notify(api, obj: dict, event: notify.Event, actor: str, reason: str = "", *,
            approvals: int | None = None, required: int | None = None) -> None:
    """Tell people about a request (``operator_app.notify``; never raises). The target's own
    ``headwind.sh/notify`` routes it: read best effort, the global channels otherwise."""
    meta, spec = obj["metadata"], obj.get("spec") or {}
    ref = spec.get("targetRef") or {}
    annotations: dict = {}
    try:
        target = kube.request(api, "GET", kind_of(ref.get("kind", "")).object_path(
            meta["namespace"], ref.get("name", "")))
        annotations = (target.get("metadata") or {}).get("annotations") or {}
    except (kube.KubeError, ValueError) as exc:
        log.info("notification for %s/%s routed without the target's annotations: %s",
                 meta["namespace"], meta["name"], exc)
    notify.emit(notify.Notice(
        event=event, kind=ref.get("kind", ""), namespace=meta["namespace"],
        name=ref.get("name", ""), slot=spec.get("containerName", ""),
        from_ref=spec.get("currentImage", ""), to_ref=spec.get("newImage", ""),
        policy=spec.get("policy", ""), actor=actor, reason=reason, request=meta["name"],
        approvals=approvals, required=required, annotations=annotations))


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def _mirror(obj: dict) -> UpdateRequest:
    """The mirror row after a change the cluster already holds. A database that cannot take the
    write now (SQLite busy) must not turn a done action into an error: the mirror's watch
    writes the row soon, and the caller gets the row as it will be."""
    try:
        row = mirror.upsert(obj)
    except DatabaseError as exc:
        log.warning("mirror row for %s/%s not written now (%s); the watch will catch up",
                    obj["metadata"]["namespace"], obj["metadata"]["name"], exc)
        row = None
    return row or mirror.unsaved(obj)


def _api():
    try:
        return cluster.api()
    except kube.ClusterUnreachable as exc:
        log.error("no Kubernetes client: %s", exc)
        raise Unavailable("the Kubernetes API server is not available; try again") from None


def _unavailable(exc: kube.KubeError) -> Unavailable:
    log.warning("Kubernetes API error during an approval action: %s", exc)
    if 400 <= exc.status < 500 and exc.status != 429:
        return Unavailable(f"the Kubernetes API server refused the change "
                           f"({exc.status} {exc.reason})")
    return Unavailable("the Kubernetes API server is not available; try again")


def _authorize(actor: Actor, obj: dict) -> None:
    meta, spec = obj["metadata"], obj.get("spec") or {}
    ref = spec.get("targetRef") or {}
    try:
        allowed, reason = authorize(actor, meta["namespace"], ref.get("kind", ""),
                                    ref.get("name", ""))
    except kube.KubeError as exc:
        raise _unavailable(exc) from None
    if not allowed:
        raise NotAllowed(reason or "not allowed")


def _require_pending(obj: dict, verb: str) -> None:
    phase = phase_of(obj)
    if phase != ur.Phase.PENDING:
        meta = obj["metadata"]
        raise Conflict(f"{meta['namespace']}/{meta['name']} is {phase}; only Pending requests "
                       f"can be {verb}")


def _expired(obj: dict, now: datetime) -> datetime | None:
    """When the request expired, or None while it has not (or has no expiry)."""
    expires = ur.parse_rfc3339((obj.get("spec") or {}).get("expiresAt"))
    return expires if expires is not None and expires <= now else None


def _mark_expired(api, obj: dict) -> dict | None:
    meta = obj["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    expires_at = (obj.get("spec") or {}).get("expiresAt")
    try:
        updated = ur.set_phase(api, namespace, name, ur.Phase.EXPIRED,
                               message=f"expired at {expires_at} before enough approvals",
                               expect_phases={ur.Phase.PENDING})
    except PhaseConflict as exc:
        log.info("not expiring: %s", exc)
        return None
    except (kube.KubeError, StatusContention) as exc:
        log.warning("could not expire UpdateRequest %s/%s: %s", namespace, name, exc)
        return None
    metrics.request_decided(updated, "expired")
    mirror.upsert(updated)
    audit.record("headwind", "expire", f"{namespace}/{name}", audit.SUCCESS,
                 f"not approved before {expires_at}")
    _notify(api, updated, notify.Event.REQUEST_EXPIRED, "headwind",
            f"not approved before {expires_at}")
    log.info("UpdateRequest %s/%s expired (expiresAt %s)", namespace, name, expires_at)
    return updated


def _refuse_if_expired(api, obj: dict) -> None:
    expires = _expired(obj, datetime.now(UTC))
    if expires is None:
        return
    _mark_expired(api, obj)
    meta = obj["metadata"]
    raise Conflict(f"{meta['namespace']}/{meta['name']} expired at {rfc3339(expires)}")


def _require_current(api, obj: dict) -> None:
    """The workload still exists and still runs ``spec.currentImage`` (else Conflict "stale")."""
    spec = obj.get("spec") or {}
    ref = spec.get("targetRef") or {}
    namespace = ref.get("namespace") or obj["metadata"]["namespace"]
    try:
        live = apply.read_live(api, ref.get("kind", ""), namespace, ref.get("name", ""),
                               spec.get("containerName", ""), uid=ref.get("uid"))
    except apply.TargetGone as exc:
        raise Conflict(f"stale: {exc.reason}") from None
    except kube.KubeError as exc:
        raise _unavailable(exc) from None
    if live.image != spec.get("currentImage"):
        raise Conflict(f"stale: container {spec.get('containerName', '')} runs {live.image}, "
                       f"not {spec.get('currentImage')} as when this was proposed")


def _check_names(namespace, name) -> None:
    """Only valid Kubernetes names reach an API path (no ``..``, ``/`` or ``?`` tricks)."""
    if not (isinstance(namespace, str) and isinstance(name, str)
            and _NAMESPACE.fullmatch(namespace) and _NAME.fullmatch(name)):
        raise NotFound("no such update request")


def _text(value, field: str, *, required: bool) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be text")
    value = value.strip()
    if required and not value:
        raise InvalidInput(f"a {field} is required")
    if len(value) > MAX_TEXT:
        raise InvalidInput(f"{field} is longer than {MAX_TEXT} characters")
    if any(ord(ch) < 32 and ch not in "\n\r\t" for ch in value):
        raise InvalidInput(f"{field} contains control characters")
    return value


def _audit_refusal(actor: Actor, action: str, target: str, exc: ServiceError) -> None:
    result = audit.ERROR if isinstance(exc, Unavailable) else audit.REFUSED
    audit.record(actor.username, action, target, result, exc.reason, via=actor.via,
                 error=type(exc).__name__)
