"""Approve, reject and expire UpdateRequests: the one place that decides, for every interface.

Every action writes the custom resource first (through its status subresource, guarded by the
resourceVersion it read), then updates the mirror row from the object the API server returned.
Rules:

* only Pending requests can be approved or rejected (409 otherwise); Rejected is final;
* ``spec.approvalsRequired`` distinct people must approve before the phase becomes Approved
  (the same person twice is a 409);
* an approval re-checks that the request has not expired and that the workload still runs
  ``spec.currentImage`` (409 "stale" otherwise), then queues the Celery apply task, whose result
  lands in the request's status;
* who may act is decided by :mod:`approvals.permissions` (403 with a reason);
* every attempt, allowed or not, leaves an audit event.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

import urllib3
from django.utils import timezone

from operator_app import kube
from operator_app import update_requests as ur
from operator_app.update_requests import PhaseConflict, parse_rfc3339, phase_of, rfc3339
from operator_app.workloads import kind_of

from . import audit, cluster, mirror
from .models import Phase, UpdateRequest
from .permissions import Actor, authorize
from .permissions import can_approve as _can_approve

log = logging.getLogger(__name__)

__all__ = ["ActionRefused", "Actor", "approve", "reject", "can_approve", "expire_overdue"]

MAX_TEXT = 1000
_WRITE_ATTEMPTS = 8
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


class ActionRefused(Exception):
    """The action was not carried out. ``status`` is the HTTP status to answer with.

    403 not allowed, 404 no such request, 409 not possible in the request's state (already
    decided, expired, stale, same approver twice); also 400 for a missing/invalid reason or
    comment and 503 when the Kubernetes API server cannot be reached. ``reason`` is short text
    that is safe to show to the caller.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


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
        obj = _approve(actor, namespace, name, comment)
    except ActionRefused as exc:
        _audit_refusal(actor, "approve", target, exc)
        raise
    phase = phase_of(obj)
    # Queue first: the custom resource already says Approved, and a local database hiccup
    # below must not leave it approved but never applied.
    failed_row = _queue(actor, obj) if phase == ur.APPROVED else None
    row = failed_row or mirror.upsert(obj)
    status = obj.get("status") or {}
    spec = obj.get("spec") or {}
    audit.record(actor.username, "approve", target, audit.SUCCESS,
                 status.get("message", ""), via=actor.via, phase=phase,
                 approvals=len(status.get("approvals") or []),
                 required=spec.get("approvalsRequired", 1), new_image=spec.get("newImage"),
                 comment=comment)
    return row


def reject(actor: Actor, namespace: str, name: str, reason: str) -> UpdateRequest:
    """Reject a Pending request for good, with a reason."""
    target = f"{namespace}/{name}"[:512]
    try:
        _check_names(namespace, name)
        reason = _text(reason, "reason", required=True)
        api = _api()
        obj = _read(api, namespace, name)
        _authorize(actor, obj)
        _require_pending(obj, "rejected")
        _refuse_if_expired(api, obj)
        try:
            obj = _call(ur.set_phase, api, namespace, name, ur.REJECTED, message=reason,
                        extra_status={"rejectedBy": actor.username,
                                      "rejectedAt": rfc3339(datetime.now(UTC))},
                        expect_phases={ur.PENDING})
        except PhaseConflict as exc:
            raise ActionRefused(409, f"{target} is {exc.current}; only Pending requests can "
                                     "be rejected") from None
    except ActionRefused as exc:
        _audit_refusal(actor, "reject", target, exc)
        raise
    row = mirror.upsert(obj)
    audit.record(actor.username, "reject", target, audit.SUCCESS, reason, via=actor.via,
                 new_image=(obj.get("spec") or {}).get("newImage"))
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
        if phase_of(obj) != ur.PENDING:
            mirror.upsert(obj)
            continue
        if _expired(obj, now) is None:
            mirror.upsert(obj)
            continue
        updated = _mark_expired(api, obj)
        if updated is not None:
            expired.append(f"{namespace}/{name}")
    return expired


# --------------------------------------------------------------------------------------------
# Approval
# --------------------------------------------------------------------------------------------


def _approve(actor: Actor, namespace: str, name: str, comment: str) -> dict:
    api = _api()
    target = f"{namespace}/{name}"
    authorized = False
    for attempt in range(1, _WRITE_ATTEMPTS + 1):
        obj = _read(api, namespace, name)
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
        if actor.username in approvers:
            raise ActionRefused(409, f"{actor.username} already approved {target}; it needs "
                                     f"{required} different approvers")
        _require_current(api, obj)

        now = rfc3339(datetime.now(UTC))
        entry = {"user": actor.username, "at": now}
        if comment:
            entry["comment"] = comment
        approvals.append(entry)
        approvers.append(actor.username)
        status["approvals"] = approvals
        status["lastUpdated"] = now
        if len(set(approvers)) >= required:
            status.update(phase=ur.APPROVED, approvedBy=", ".join(approvers), approvedAt=now,
                          message=f"approved by {', '.join(approvers)}; update queued")
        else:
            status.update(phase=ur.PENDING,
                          message=f"approved by {', '.join(approvers)} "
                                  f"({len(approvers)} of {required})")
        obj["status"] = status  # metadata.resourceVersion stays: the write is conditional
        try:
            return _call(kube.request, api, "PUT", _status_path(namespace, name), body=obj)
        except kube.KubeError as exc:
            if exc.status == 409:
                log.debug("UpdateRequest %s changed while approving (attempt %d)", target,
                          attempt)
                continue
            if exc.status == 404:
                raise ActionRefused(404, f"no update request {target}") from None
            raise _unavailable(exc) from None
    raise ActionRefused(409, f"{target} kept changing while approving; try again")


def resume_approved(api, *, grace_seconds: float = 120, now: datetime | None = None) -> list[str]:
    """Re-queue Approved requests that never reached Completed/Failed (a lost broker message,
    a crash between approving and queueing, or an approval written with kubectl). The apply
    task is idempotent, so a duplicate costs one read."""
    from operator_app.tasks import apply_update_task

    now = now or datetime.now(UTC)
    items = kube.request(api, "GET", "/apis/headwind.sh/v1alpha1/updaterequests")["items"]
    resumed = []
    for obj in items:
        status = obj.get("status") or {}
        if phase_of(obj) != ur.APPROVED:
            continue
        approved_at = parse_rfc3339(status.get("approvedAt") or status.get("lastUpdated"))
        if approved_at is not None and (now - approved_at).total_seconds() < grace_seconds:
            continue
        meta, spec = obj["metadata"], obj.get("spec") or {}
        ref = spec.get("targetRef") or {}
        apply_update_task.delay(
            kind=ref.get("kind", ""), namespace=meta["namespace"], name=ref.get("name", ""),
            container=spec.get("containerName", ""), new_image=spec.get("newImage", ""),
            expected_image=spec.get("currentImage"), update_request=meta["name"],
            actor=status.get("approvedBy") or "headwind",
        )
        resumed.append(f"{meta['namespace']}/{meta['name']}")
    return resumed


def _queue(actor: Actor, obj: dict) -> UpdateRequest | None:
    """Hand the approved update to the apply task; a failure to queue marks the request Failed."""
    from operator_app.tasks import apply_update_task

    meta, spec = obj["metadata"], obj.get("spec") or {}
    ref = spec.get("targetRef") or {}
    namespace, name = meta["namespace"], meta["name"]
    try:
        apply_update_task.delay(
            kind=ref.get("kind", ""), namespace=namespace, name=ref.get("name", ""),
            container=spec.get("containerName", ""), new_image=spec.get("newImage", ""),
            expected_image=spec.get("currentImage"), update_request=name,
            actor=actor.username,
        )
        return None
    except Exception as exc:  # noqa: BLE001 - any broker failure: record it, do not hide it
        log.error("could not queue the approved update %s/%s: %s", namespace, name, exc)
        audit.record(actor.username, "approve", f"{namespace}/{name}", audit.ERROR,
                     f"approved, but the update could not be queued: {exc}", via=actor.via)
        try:
            failed = ur.set_phase(_api(), namespace, name, ur.FAILED,
                                  message=f"approved, but the update could not be queued: "
                                          f"{exc.__class__.__name__}",
                                  expect_phases={ur.APPROVED})
        except (PhaseConflict, kube.KubeError, urllib3.exceptions.HTTPError, OSError) as err:
            log.error("could not mark %s/%s Failed: %s", namespace, name, err)
            return None
        return mirror.upsert(failed)


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def _api():
    try:
        return cluster.api()
    except kube.ClusterUnreachable as exc:
        log.error("no Kubernetes client: %s", exc)
        raise ActionRefused(503, "the Kubernetes API server is not available; try again") \
            from None


def _unavailable(exc: BaseException) -> ActionRefused:
    log.warning("Kubernetes API error during an approval action: %s", exc)
    if isinstance(exc, kube.KubeError) and 400 <= exc.status < 500 and exc.status != 429:
        return ActionRefused(503, f"the Kubernetes API server refused the change "
                                  f"({exc.status} {exc.reason})")
    return ActionRefused(503, "the Kubernetes API server is not available; try again")


def _call(function, *args, **kwargs):
    """Run a Kubernetes call, turning connection failures into a 503 refusal."""
    try:
        return function(*args, **kwargs)
    except (urllib3.exceptions.HTTPError, OSError, kube.ClusterUnreachable) as exc:
        raise _unavailable(exc) from None


def _read(api, namespace: str, name: str) -> dict:
    try:
        return _call(ur.get, api, namespace, name)
    except kube.KubeError as exc:
        if exc.status == 404:
            raise ActionRefused(404, f"no update request {namespace}/{name}") from None
        raise _unavailable(exc) from None


def _authorize(actor: Actor, obj: dict) -> None:
    meta, spec = obj["metadata"], obj.get("spec") or {}
    ref = spec.get("targetRef") or {}
    try:
        allowed, reason = _call(authorize, actor, meta["namespace"], ref.get("kind", ""),
                                ref.get("name", ""))
    except kube.KubeError as exc:
        raise _unavailable(exc) from None
    if not allowed:
        raise ActionRefused(403, reason or "not allowed")


def _require_pending(obj: dict, verb: str) -> None:
    phase = phase_of(obj)
    if phase != ur.PENDING:
        meta = obj["metadata"]
        raise ActionRefused(409, f"{meta['namespace']}/{meta['name']} is {phase}; only Pending "
                                 f"requests can be {verb}")


def _expired(obj: dict, now: datetime) -> datetime | None:
    """When the request expired, or None while it has not (or has no expiry)."""
    expires = parse_rfc3339((obj.get("spec") or {}).get("expiresAt"))
    return expires if expires is not None and expires <= now else None


def _mark_expired(api, obj: dict) -> dict | None:
    meta = obj["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    expires_at = (obj.get("spec") or {}).get("expiresAt")
    try:
        updated = _call(ur.set_phase, api, namespace, name, ur.EXPIRED,
                        message=f"expired at {expires_at} before enough approvals",
                        expect_phases={ur.PENDING})
    except PhaseConflict as exc:
        log.info("not expiring: %s", exc)
        return None
    except (kube.KubeError, ActionRefused) as exc:
        log.warning("could not expire UpdateRequest %s/%s: %s", namespace, name, exc)
        return None
    mirror.upsert(updated)
    audit.record("headwind", "expire", f"{namespace}/{name}", audit.SUCCESS,
                 f"not approved before {expires_at}")
    log.info("UpdateRequest %s/%s expired (expiresAt %s)", namespace, name, expires_at)
    return updated


def _refuse_if_expired(api, obj: dict) -> None:
    expires = _expired(obj, datetime.now(UTC))
    if expires is None:
        return
    _mark_expired(api, obj)
    meta = obj["metadata"]
    raise ActionRefused(409, f"{meta['namespace']}/{meta['name']} expired at "
                             f"{rfc3339(expires)}")


def _require_current(api, obj: dict) -> None:
    """The workload still exists and still runs ``spec.currentImage`` (else 409 stale)."""
    spec = obj.get("spec") or {}
    ref = spec.get("targetRef") or {}
    kind, namespace, name = ref.get("kind", ""), ref.get("namespace") or \
        obj["metadata"]["namespace"], ref.get("name", "")
    container = spec.get("containerName", "")
    try:
        workload_kind = kind_of(kind)
    except ValueError:
        raise ActionRefused(409, f"Headwind cannot apply updates to a {kind}") from None
    try:
        live = _call(kube.request, api, "GET", workload_kind.object_path(namespace, name))
    except kube.KubeError as exc:
        if exc.status == 404:
            raise ActionRefused(409, f"stale: {kind} {namespace}/{name} no longer exists") \
                from None
        raise _unavailable(exc) from None
    if ref.get("uid") and (live.get("metadata") or {}).get("uid") not in (None, ref["uid"]):
        raise ActionRefused(409, f"stale: {kind} {namespace}/{name} was deleted and created "
                                 "again since this request was proposed")
    image = next((c.image for c in workload_kind.containers(live) if c.name == container), None)
    if image is None:
        raise ActionRefused(409, f"stale: container {container} is no longer in {kind} "
                                 f"{namespace}/{name}")
    if image != spec.get("currentImage"):
        raise ActionRefused(409, f"stale: container {container} runs {image}, not "
                                 f"{spec.get('currentImage')} as when this was proposed")


def _check_names(namespace, name) -> None:
    """Only valid Kubernetes names reach an API path (no ``..``, ``/`` or ``?`` tricks)."""
    if not (isinstance(namespace, str) and isinstance(name, str)
            and _NAMESPACE.fullmatch(namespace) and _NAME.fullmatch(name)):
        raise ActionRefused(404, "no such update request")


def _text(value, field: str, *, required: bool) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ActionRefused(400, f"{field} must be text")
    value = value.strip()
    if required and not value:
        raise ActionRefused(400, f"a {field} is required")
    if len(value) > MAX_TEXT:
        raise ActionRefused(400, f"{field} is longer than {MAX_TEXT} characters")
    if any(ord(ch) < 32 and ch not in "\n\r\t" for ch in value):
        raise ActionRefused(400, f"{field} contains control characters")
    return value


def _status_path(namespace: str, name: str) -> str:
    return f"/apis/{ur.API_VERSION}/namespaces/{namespace}/{ur.PLURAL}/{name}/status"


def _audit_refusal(actor: Actor, action: str, target: str, exc: ActionRefused) -> None:
    result = audit.ERROR if exc.status >= 500 else audit.REFUSED
    audit.record(actor.username, action, target, result, exc.reason, via=actor.via,
                 status=exc.status)
