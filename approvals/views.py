"""The HTMX dashboard: the list, a request's page, and the approve and reject dialogs.

Views only orchestrate. Reading goes through ``selectors.filter_requests``, every decision through
``services.approve`` / ``services.reject`` (which enforce the permission and the namespace grant
whatever the page showed), and ``services.can_approve`` only decides which buttons to offer.

Every page works without JavaScript; with htmx the same URLs answer with fragments:

* ``/`` with ``HX-Request`` → the results fragment (table and pagination) for the filter form;
* ``/updates/<ns>/<name>`` with ``HX-Request`` → the detail fragment (live refresh);
* ``/updates/<ns>/<name>/row`` → one table row (live refresh of a listed request);
* ``/updates/<ns>/<name>/approve`` and ``/reject``: GET → the ``<dialog>``, POST → the action,
  answered with the new row (or detail fragment) and a toast in ``HX-Trigger``. A refusal is its
  status (403, 404, 409) with the reason as an error toast, and nothing is swapped.
"""

from __future__ import annotations

import functools
import json
import logging
from urllib.parse import quote

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods

from . import selectors, services
from .errors import ServiceError
from .http import status_for
from .models import AuditEvent, Phase, UpdateRequest
from .permissions import Actor

log = logging.getLogger(__name__)

PAGE_SIZE = 25
TOAST_EVENT = "headwind:toast"
POLICIES = ["patch", "minor", "major", "all", "glob", "regexp", "force", "digest"]
#: ``selectors.SORTS`` keys offered in the dashboard (a leading ``-`` reverses).
SORTS = [
    ("", "Pending first, newest"),
    ("-created", "Newest first"),
    ("created", "Oldest first"),
    ("expires", "Expiring soonest"),
    ("namespace", "Namespace A–Z"),
    ("target", "Target A–Z"),
    ("phase", "By phase"),
    ("-updated", "Recently changed"),
]
FILTERS = ("namespace", "kind", "phase", "policy", "q", "sort")
REASON_MAX = 1000
HISTORY = 50


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def login_required(view):
    """Like Django's, but an htmx request gets ``HX-Redirect`` instead of a login page fragment."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if request.user.is_authenticated:
            return view(request, *args, **kwargs)
        if getattr(request, "htmx", False):
            response = HttpResponse(status=401)
            current = request.htmx.current_url_abs_path or reverse("approvals:dashboard")
            response["HX-Redirect"] = f"{resolve_url(settings.LOGIN_URL)}?next={quote(current)}"
            return response
        return redirect_to_login(request.get_full_path())

    return wrapper


def _fragment(request: HttpRequest) -> bool:
    """An htmx request that wants a fragment (a history restore wants the whole page)."""
    return bool(request.htmx) and not request.htmx.history_restore_request


def _toast(response: HttpResponse, level: str, message: str) -> HttpResponse:
    """Attach a toast: htmx raises ``headwind:toast`` and headwind.js shows it."""
    triggers = json.loads(response.get("HX-Trigger") or "{}")
    triggers[TOAST_EVENT] = {"level": level, "message": message}
    response["HX-Trigger"] = json.dumps(triggers)
    return response


class Rights:
    """``services.can_approve`` for one actor, asked once per namespace per request."""

    def __init__(self, actor) -> None:
        self.actor = actor
        self._cache: dict[str, tuple[bool, str]] = {}

    def check(self, namespace: str) -> tuple[bool, str]:
        if namespace not in self._cache:
            self._cache[namespace] = services.can_approve(self.actor, namespace)
        return self._cache[namespace]

    def annotate(self, ur: UpdateRequest) -> UpdateRequest:
        """Set ``ui_actions`` (offer buttons at all), ``ui_allowed`` and ``ui_refusal``."""
        ur.ui_actions = ur.phase == Phase.PENDING
        allowed, reason = self.check(ur.namespace) if ur.ui_actions else (False, "")
        username = getattr(self.actor, "username", "")
        if allowed and username and username in ur.approvers:
            allowed, reason = False, "you have already approved this request"
        ur.ui_allowed, ur.ui_refusal = allowed, reason
        return ur


def _detail_context(ur: UpdateRequest) -> dict:
    """The request and its audit trail (oldest first; the latest ``HISTORY`` entries)."""
    events = list(AuditEvent.objects.filter(target=f"{ur.namespace}/{ur.name}")
                  .order_by("-at")[:HISTORY])
    return {"ur": ur, "now": timezone.now(), "history": events[::-1]}


def _get(namespace: str, name: str) -> UpdateRequest | None:
    return UpdateRequest.objects.filter(namespace=namespace, name=name).first()


def _missing(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    response = render(request, "approvals/missing.html",
                      {"namespace": namespace, "name": name}, status=404)
    return _toast(response, "error", f"UpdateRequest {namespace}/{name} does not exist "
                  "(any more)") if request.htmx else response


# --------------------------------------------------------------------------------------------
# Pages
# --------------------------------------------------------------------------------------------


@require_GET
@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """Pending first; filtered, sorted and paginated on the server (25 a page)."""
    params = request.GET
    page = Paginator(selectors.filter_requests(params), PAGE_SIZE).get_page(params.get("page"))
    rights = Rights(Actor.from_request(request))
    rows = [rights.annotate(ur) for ur in page.object_list]
    context = {
        "page": page,
        "rows": rows,
        "filters": {key: params.get(key, "") for key in FILTERS},
        "filtered": any(params.get(key) for key in FILTERS if key != "sort"),
        "pending_count": UpdateRequest.objects.filter(phase=Phase.PENDING).count(),
    }
    if _fragment(request):
        response = render(request, "approvals/_results.html", context)
    else:
        context.update(
            namespaces=UpdateRequest.objects.order_by("namespace")
            .values_list("namespace", flat=True).distinct(),
            kinds=selectors.KINDS, phases=Phase.choices, policies=POLICIES, sorts=SORTS,
        )
        response = render(request, "approvals/dashboard.html", context)
    patch_vary_headers(response, ("HX-Request",))
    return response


@require_GET
@login_required
def detail(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    ur = _get(namespace, name)
    if ur is None:
        return _missing(request, namespace, name)
    Rights(Actor.from_request(request)).annotate(ur)
    context = _detail_context(ur)
    template = "approvals/_detail.html" if _fragment(request) else "approvals/detail.html"
    response = render(request, template, context)
    patch_vary_headers(response, ("HX-Request",))
    return response


@require_GET
@login_required
def row(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    """One row of the list, for live updates (404 when the request is gone)."""
    ur = _get(namespace, name)
    if ur is None:
        return HttpResponse(status=404)
    Rights(Actor.from_request(request)).annotate(ur)
    return render(request, "approvals/_row.html", {"ur": ur})


# --------------------------------------------------------------------------------------------
# Actions
# --------------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@login_required
def approve(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    return _action(request, namespace, name, "approve")


@require_http_methods(["GET", "POST"])
@login_required
def reject(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    return _action(request, namespace, name, "reject")


def _action(request: HttpRequest, namespace: str, name: str, action: str) -> HttpResponse:
    ur = _get(namespace, name)
    if ur is None:
        return _missing(request, namespace, name)
    actor = Actor.from_request(request)
    Rights(actor).annotate(ur)
    origin = "detail" if (request.POST or request.GET).get("from") == "detail" else "list"
    if request.method == "GET":
        return _dialog(request, ur, action, origin)

    text = (request.POST.get("reason" if action == "reject" else "comment") or "").strip()
    if action == "reject" and not text:
        return _dialog(request, ur, action, origin, error="A reason is required to reject.",
                       status=422)
    if len(text) > REASON_MAX:
        return _dialog(request, ur, action, origin, text=text, status=422,
                       error=f"Please keep it under {REASON_MAX} characters.")
    try:
        if action == "approve":
            ur = services.approve(actor, namespace, name, comment=text)
        else:
            ur = services.reject(actor, namespace, name, text)
    except ServiceError as exc:
        return _refused(request, ur, action, status_for(exc), exc.reason)
    except Exception as exc:  # noqa: BLE001 - a failed action is a message, never a 500 page
        log.exception("%s of %s/%s by %s failed", action, namespace, name,
                      getattr(actor, "username", "?"))
        return _refused(request, ur, action, 503,
                        f"the cluster could not be updated ({type(exc).__name__}); try again")
    return _done(request, ur, action, origin)


def _dialog(request, ur, action, origin, *, error="", text="", status=200) -> HttpResponse:
    if not ur.ui_actions:
        blocked = f"This request is {ur.phase}; only Pending requests can be decided."
    else:
        blocked = "" if ur.ui_allowed else f"You cannot {action} this request: {ur.ui_refusal}"
    context = {"ur": ur, "action": action, "origin": origin, "error": error, "text": text,
               "blocked": blocked,
               "action_url": reverse(f"approvals:{action}", args=[ur.namespace, ur.name])}
    if _fragment(request):
        response = render(request, "approvals/_dialog.html", context, status=status)
        if status != 200:  # a re-rendered dialog replaces the open one
            response["HX-Retarget"] = "#dialog-slot"
            response["HX-Reswap"] = "innerHTML"
        return response
    return render(request, "approvals/action.html", context, status=status)


def _done(request, ur, action, origin) -> HttpResponse:
    key = f"{ur.namespace}/{ur.name}"
    if action == "reject":
        message = f"Rejected {key}."
    elif ur.phase == Phase.PENDING:
        count, required = len(ur.approvers), ur.approvals_required
        message = f"Approval recorded for {key} ({count} of {required})."
    else:
        message = f"Approved {key}; the update is being applied."
    if not request.htmx:
        messages.success(request, message)
        return redirect("approvals:detail", ur.namespace, ur.name)
    Rights(Actor.from_request(request)).annotate(ur)
    if origin == "detail":
        response = render(request, "approvals/_detail.html", _detail_context(ur))
    else:
        response = render(request, "approvals/_row.html", {"ur": ur})
    return _toast(response, "success", message)


def _refused(request, ur, action, status: int, reason: str) -> HttpResponse:
    message = f"Could not {action} {ur.namespace}/{ur.name}: {reason}"
    if not request.htmx:
        messages.error(request, message)
        return render(request, "approvals/detail.html", _detail_context(ur), status=status)
    return _toast(HttpResponse(message, status=status, content_type="text/plain"),
                  "error", message)

