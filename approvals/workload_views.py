"""The dashboard's workload page: containers, their rollouts, holds and bad versions, the update
history with a "roll back to this" button per earlier version, behind a confirmation page.

Views parse input and call :mod:`approvals.rollbacks`, which decides who may act and audits
every attempt; a refusal is shown as a message with its HTTP status, never a 500 page.
"""

from __future__ import annotations

import logging

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import rollbacks
from .errors import NotFound, ServiceError
from .http import status_for
from .models import UpdateRequest, Workload
from .permissions import Actor, can_approve
from .selectors import KINDS
from .views import POLICIES, login_required
from .workload_selectors import count_open_requests, filter_workloads

PAGE_SIZE = 25
FILTERS = ("namespace", "kind", "policy", "behind", "q", "sort")
SORT_LABELS = [("", "Namespace, kind, name"), ("behind", "Most behind first"),
               ("-updated", "Least recently updated"), ("updated", "Recently updated"),
               ("age", "Oldest running version"), ("name", "Name A–Z"), ("kind", "Kind")]

log = logging.getLogger(__name__)


@require_GET
@login_required
def workloads(request: HttpRequest) -> HttpResponse:
    """Every managed container and chart, from the inventory mirror (never the cluster)."""
    params = request.GET
    page = Paginator(filter_workloads(params), PAGE_SIZE).get_page(params.get("page"))
    context = {"page": page, "rows": count_open_requests(page.object_list),
               "filters": {key: params.get(key, "") for key in FILTERS},
               "filtered": any(params.get(key) for key in FILTERS if key != "sort"),
               "total": Workload.objects.count()}
    if request.htmx and not request.htmx.history_restore_request:
        response = render(request, "approvals/_workload_results.html", context)
    else:
        context.update(namespaces=Workload.objects.order_by("namespace")
                       .values_list("namespace", flat=True).distinct(),
                       kinds=KINDS, policies=POLICIES, sorts=SORT_LABELS)
        response = render(request, "approvals/workloads.html", context)
    patch_vary_headers(response, ("HX-Request",))
    return response


def _page(request: HttpRequest, namespace: str, kind: str, name: str, *,
          status: int = 200) -> HttpResponse:
    try:
        state = rollbacks.workload_state(kind, namespace, name)
    except ServiceError as exc:
        return render(request, "approvals/workload_missing.html",
                      {"namespace": namespace, "kind": kind, "name": name,
                       "reason": exc.reason}, status=status_for(exc))
    allowed, refusal = can_approve(Actor.from_request(request), namespace)
    radar = {row.container: row for row in Workload.objects.filter(
        kind=state.kind, namespace=namespace, name=name)}
    requests = UpdateRequest.objects.filter(target_kind=state.kind, namespace=namespace,
                                            target_name=name).order_by("-created_at")[:20]
    return render(request, "approvals/workload.html",
                  {"state": state, "may_act": allowed, "refusal": refusal,
                   "slots": [(slot, radar.get(slot.name)) for slot in state.slots],
                   "requests": requests}, status=status)


@require_GET
@login_required
def workload(request: HttpRequest, namespace: str, kind: str, name: str) -> HttpResponse:
    return _page(request, namespace, kind, name)


@require_http_methods(["GET", "POST"])
@login_required
def rollback(request: HttpRequest, namespace: str, kind: str, name: str) -> HttpResponse:
    """GET: the confirmation page; POST: roll back and hold."""
    params = request.POST if request.method == "POST" else request.GET
    container, to = params.get("container") or "", params.get("to") or ""
    if request.method == "GET":
        try:
            state = rollbacks.workload_state(kind, namespace, name)
        except ServiceError as exc:
            return render(request, "approvals/workload_missing.html",
                          {"namespace": namespace, "kind": kind, "name": name,
                           "reason": exc.reason}, status=status_for(exc))
        slot = next((s for s in state.slots if s.name == container), None)
        if slot is None or to not in slot.rollback_targets:
            messages.error(request, f"{to or 'that version'} is not in the history of "
                                    f"{container or 'that container'}")
            return redirect("approvals:workload", namespace, state.kind, name)
        return render(request, "approvals/rollback_confirm.html",
                      {"state": state, "slot": slot, "to": to})
    try:
        queued = rollbacks.rollback(Actor.from_request(request), kind, namespace, name,
                                    container, to, params.get("reason") or "")
    except NotFound as exc:
        messages.error(request, exc.reason)
        return _page(request, namespace, kind, name, status=404)
    except ServiceError as exc:
        messages.error(request, f"Could not roll back: {exc.reason}")
        return _page(request, namespace, kind, name, status=status_for(exc))
    messages.success(request, f"Rolling {queued.container} back to {queued.to_image}; it is "
                              "held there until you release it.")
    return redirect("approvals:workload", namespace, queued.kind, name)


@require_POST
@login_required
def apply_now(request: HttpRequest, namespace: str, kind: str, name: str) -> HttpResponse:
    container = request.POST.get("container") or ""
    return _state_action(request, namespace, kind, name,
                         f"Applying the update of {container} now, without waiting for the "
                         "maintenance window.",
                         lambda actor: rollbacks.apply_now(actor, kind, namespace, name,
                                                           container))


@require_POST
@login_required
def release_hold(request: HttpRequest, namespace: str, kind: str, name: str) -> HttpResponse:
    container = request.POST.get("container") or ""
    return _state_action(request, namespace, kind, name, f"Released the hold on {container}.",
                         lambda actor: rollbacks.release_hold(actor, kind, namespace, name,
                                                              container))


@require_POST
@login_required
def clear_bad_version(request: HttpRequest, namespace: str, kind: str,
                      name: str) -> HttpResponse:
    container = request.POST.get("container") or ""
    version = request.POST.get("version") or ""
    return _state_action(request, namespace, kind, name,
                         f"{version} of {container} may be applied again.",
                         lambda actor: rollbacks.clear_bad_version(actor, kind, namespace, name,
                                                                   container, version))


def _state_action(request, namespace, kind, name, done: str, action) -> HttpResponse:
    try:
        action(Actor.from_request(request))
    except ServiceError as exc:
        messages.error(request, exc.reason)
        return _page(request, namespace, kind, name, status=status_for(exc))
    messages.success(request, done)
    return redirect("approvals:workload", namespace, kind, name)
