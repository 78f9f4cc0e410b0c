"""``/api/v1/workloads/<namespace>/<kind>/<name>``: a workload's history, rollbacks, holds and
bad versions (see :mod:`approvals.rollbacks`). Authentication and errors as in
:mod:`approvals.api`; ``<kind>`` is ``Deployment``, ``deployment`` or ``deployments``."""

from __future__ import annotations

from django.http import JsonResponse

from operator_app import kube

from . import rollbacks
from .api import ApiError, _body, endpoint
from .permissions import Actor, resource_of, subject_access_review
from .rollbacks import WorkloadState


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

    return {
        "kind": state.kind, "namespace": state.namespace, "name": state.name,
        "policy": state.policy,
        "containers": [{
            "name": slot.name, "current": slot.current, "rollout": record(slot.rollout),
            "hold": ({"version": slot.hold.version, "by": slot.hold.by, "at": slot.hold.at,
                      "reason": slot.hold.reason} if slot.hold else None),
            "badVersions": list(slot.bad_versions),
            "rollbackTargets": list(slot.rollback_targets),
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
