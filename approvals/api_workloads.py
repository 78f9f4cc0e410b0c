"""``/api/v1/workloads/<namespace>/<kind>/<name>``: a workload's history, rollbacks, holds and
bad versions (see :mod:`approvals.rollbacks`). Authentication and errors as in
:mod:`approvals.api`; ``<kind>`` is ``Deployment``, ``deployment`` or ``deployments``."""

from __future__ import annotations

from django.http import JsonResponse

from operator_app import kube

from . import rollbacks
from .api import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, ApiError, _body, _positive_int, endpoint
from .models import Workload
from .permissions import Actor, resource_of, subject_access_review
from .rollbacks import WorkloadState
from .workload_selectors import count_open_requests, filter_workloads


def _time(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def radar(row: Workload | None) -> dict | None:
    """The inventory row's radar, or None before the first radar pass."""
    if row is None or row.radar_at is None:
        return None
    return {"newestAllowed": row.newest_allowed or None, "newestAny": row.newest_any or None,
            "behindPolicy": row.behind_policy, "behindAny": row.behind_any,
            "runningReleased": _time(row.running_released),
            "waitingUntil": _time(row.waiting_until), "checkedAt": _time(row.checked_at),
            "surveyedAt": _time(row.radar_at)}


def inventory_row(row: Workload) -> dict:
    return {
        "kind": row.kind, "namespace": row.namespace, "name": row.name,
        "container": row.container, "current": row.current, "policy": row.policy,
        "trigger": row.trigger, "requireApproval": row.require_approval, "held": row.held,
        "lastUpdate": ({"at": _time(row.last_update_at), "from": row.last_from,
                        "to": row.last_to, "by": row.last_by} if row.last_update_at else None),
        "rolloutState": row.rollout_state or None,
        "scheduledFor": _time(row.scheduled_for),
        "openRequests": getattr(row, "open_requests", None),
        "radar": radar(row),
    }


def _may_read(actor: Actor, kind: str, namespace: str, name: str) -> None:
    """Kubernetes callers need RBAC ``get`` on the workload; Django users to be signed in."""
    if not actor.is_kubernetes:
        return
    group, resource = resource_of(rollbacks.kind_named(kind).kind)
    try:
        allowed, _why = subject_access_review(actor, verb="get", group=group,
                                              resource=resource, namespace=namespace,
                                              name=name)
    except kube.KubeError:
        raise ApiError(503, "the Kubernetes API server could not check access; try again") \
            from None
    if not allowed:
        raise ApiError(403, f"Kubernetes RBAC does not allow {actor.kube_user} to get "
                            f"{resource} {namespace}/{name}")


def serialize(state: WorkloadState) -> dict:
    def record(value):
        return value.to_json() if value is not None else None

    rows = {row.container: row for row in Workload.objects.filter(
        kind=state.kind, namespace=state.namespace, name=state.name)}

    return {
        "kind": state.kind, "namespace": state.namespace, "name": state.name,
        "policy": state.policy,
        "containers": [{
            "name": slot.name, "current": slot.current, "rollout": record(slot.rollout),
            "hold": ({"version": slot.hold.version, "by": slot.hold.by, "at": slot.hold.at,
                      "reason": slot.hold.reason} if slot.hold else None),
            "badVersions": list(slot.bad_versions),
            "rollbackTargets": list(slot.rollback_targets),
            "scheduledFor": _time(rows[slot.name].scheduled_for) if slot.name in rows else None,
            "radar": radar(rows.get(slot.name)),
        } for slot in state.slots],
        "history": list(state.history),
        **({"problem": state.problem} if state.problem else {}),
    }


def _string(data: dict, key: str, *, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, f"{key} is required and must be a string")
    return value.strip()


@endpoint("GET")
def list_workloads(request, actor: Actor):
    """The inventory (``approvals.workload_selectors`` filters), one row per container."""
    params = request.GET
    if actor.is_kubernetes:
        for namespace in [n.strip() for n in (params.get("namespace") or "").split(",")
                          if n.strip()] or [""]:
            _may_list(actor, namespace)
    page = _positive_int(params, "page", 1)
    page_size = _positive_int(params, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    rows = filter_workloads(params, strict=True)
    total = rows.count()
    start = (page - 1) * page_size
    items = [inventory_row(row) for row in count_open_requests(rows[start:start + page_size])] \
        if start < total else []
    return JsonResponse({"total": total, "page": page, "page_size": page_size, "items": items})


def _may_list(actor: Actor, namespace: str) -> None:
    """Kubernetes callers list the inventory of namespaces where they may list Deployments."""
    try:
        allowed, _why = subject_access_review(actor, verb="list", group="apps",
                                              resource="deployments", namespace=namespace)
    except kube.KubeError:
        raise ApiError(503, "the Kubernetes API server could not check access; try again") \
            from None
    if not allowed:
        where = f"namespace {namespace}" if namespace else "all namespaces; filter by namespace="
        raise ApiError(403, f"Kubernetes RBAC does not allow {actor.kube_user} to list "
                            f"deployments in {where}")


@endpoint("GET")
def workload(request, actor: Actor, namespace: str, kind: str, name: str):
    _may_read(actor, kind, namespace, name)
    return JsonResponse(serialize(rollbacks.workload_state(kind, namespace, name)))


@endpoint("POST")
def rollback(request, actor: Actor, namespace: str, kind: str, name: str):
    data = _body(request)
    reason = data.get("reason", "")
    if reason is not None and not isinstance(reason, str):
        raise ApiError(400, "reason must be a string")
    queued = rollbacks.rollback(actor, kind, namespace, name,
                                _string(data, "container", required=False),
                                _string(data, "to") or "", reason or "")
    return JsonResponse({
        "rollback": queued.as_dict(),
        "message": f"rollback of {queued.kind} {namespace}/{name} container "
                   f"{queued.container} from {queued.from_image} to {queued.to_image} queued; "
                   f"the container is held at {queued.to_image} until the hold is released",
    }, status=202)


@endpoint("POST")
def apply_now(request, actor: Actor, namespace: str, kind: str, name: str):
    data = _body(request)
    command = rollbacks.apply_now(actor, kind, namespace, name, _string(data, "container") or "")
    return JsonResponse({"queued": {"kind": command.kind, "namespace": namespace, "name": name,
                                    "container": command.container, "to": command.new_image,
                                    "request": command.request},
                         "message": f"{command.container} → {command.new_image} is applied "
                                    "now, without waiting for the maintenance window"},
                        status=202)


@endpoint("POST")
def release_hold(request, actor: Actor, namespace: str, kind: str, name: str):
    data = _body(request)
    container = _string(data, "container") or ""
    rollbacks.release_hold(actor, kind, namespace, name, container)
    return JsonResponse(serialize(rollbacks.workload_state(kind, namespace, name)))


@endpoint("POST")
def clear_bad_version(request, actor: Actor, namespace: str, kind: str, name: str):
    data = _body(request)
    rollbacks.clear_bad_version(actor, kind, namespace, name, _string(data, "container") or "",
                                _string(data, "version") or "")
    return JsonResponse(serialize(rollbacks.workload_state(kind, namespace, name)))
