"""REST API ``/api/v1/``: list, read, approve and reject UpdateRequests.

Authentication, in this order:

1. ``Authorization: Token <key>`` — a Headwind API token (``manage.py create_api_token``);
2. ``Authorization: Bearer <token>`` — a Kubernetes token, checked with a TokenReview (a
   Headwind key sent as a bearer token is accepted as well);
3. the Django session (login, SSO or trusted proxy); unsafe methods then need the CSRF token.

A request with an ``Authorization`` header that does not authenticate is refused (401), never
retried as the session. Every error is JSON: ``{"error": <code>, "reason": <text>}``.
The OpenAPI 3.1 description is ``GET /api/v1/openapi.json`` (see :mod:`approvals.openapi`).
"""

from __future__ import annotations

import functools
import json
import logging

from django.core.cache import cache
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from operator_app import kube

from . import audit, auth, openapi, services
from .errors import ServiceError
from .http import status_for
from .models import UpdateRequest
from .permissions import VIA_API_TOKEN, Actor, authorize, subject_access_review
from .selectors import InvalidFilter, filter_requests

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
ERROR_CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 429: "too_many_requests",
               500: "internal_error", 503: "unavailable"}
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


class ApiError(Exception):
    def __init__(self, status: int, reason: str, error: str | None = None, headers=None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.error = error or ERROR_CODES.get(status, "error")
        self.headers = headers or {}


def error_response(status: int, reason: str, error: str | None = None,
                   headers: dict | None = None) -> JsonResponse:
    response = JsonResponse({"error": error or ERROR_CODES.get(status, "error"),
                             "reason": reason}, status=status)
    for key, value in (headers or {}).items():
        response[key] = value
    return response


# --------------------------------------------------------------------------------------------
# Authentication
# --------------------------------------------------------------------------------------------


class _CsrfCheck(CsrfViewMiddleware):
    def _reject(self, request, reason):
        return reason


# Failed sign-ins per client address: each costs a TokenReview and an audit row, so a flood of
# random tokens is cut off after this many within the window (per web process).
MAX_FAILED_SIGN_INS = 30
FAILED_SIGN_IN_WINDOW = 60


def _failures_key(request) -> str:
    return f"headwind:api-sign-in-failures:{audit.client_address(request)}"


def _throttle(request) -> None:
    if cache.get(_failures_key(request), 0) >= MAX_FAILED_SIGN_INS:
        raise ApiError(429, "too many failed sign-ins from this address; try again later",
                       headers={"Retry-After": str(FAILED_SIGN_IN_WINDOW)})


def _unauthenticated(request, via: str, reason: str, username: str = "") -> ApiError:
    key = _failures_key(request)
    if not cache.add(key, 1, FAILED_SIGN_IN_WINDOW):
        try:
            cache.incr(key)
        except ValueError:  # expired in between
            cache.add(key, 1, FAILED_SIGN_IN_WINDOW)
    audit.record(username or "anonymous", "login_failed", result=audit.REFUSED, reason=reason,
                 via=via, remote_addr=audit.client_address(request), path=request.path[:200])
    return ApiError(401, reason, headers={"WWW-Authenticate": 'Bearer realm="headwind"'})


def authenticate(request) -> Actor:
    """The caller, or ApiError 401/403/503."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        _throttle(request)
        scheme, _, credentials = header.strip().partition(" ")
        scheme, credentials = scheme.lower(), credentials.strip()
        if scheme == "token" or (scheme == "bearer" and
                                 credentials.startswith(auth.TOKEN_PREFIX)):
            user = auth.user_for_api_token(credentials)
            if user is None:
                raise _unauthenticated(request, VIA_API_TOKEN, "invalid or revoked API token")
            actor = Actor.from_user(user, via=VIA_API_TOKEN)
        elif scheme == "bearer":
            try:
                actor, reason = auth.review_kubernetes_token(credentials)
            except auth.TokenReviewUnavailable:
                raise ApiError(503, "the Kubernetes API server could not review the token; "
                                    "try again") from None
            if actor is None:
                raise _unauthenticated(request, "kubernetes", reason)
        else:
            raise _unauthenticated(request, "header", "unsupported Authorization scheme; use "
                                                      "'Token <key>' or 'Bearer <token>'")
        request.headwind_actor = actor
        return actor

    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        raise ApiError(401, "authentication required: a session, 'Authorization: Token <key>' "
                            "or 'Authorization: Bearer <Kubernetes token>'",
                       headers={"WWW-Authenticate": 'Bearer realm="headwind"'})
    if not user.is_active:
        raise ApiError(401, "this account is disabled")
    if request.method in _UNSAFE:
        check = _CsrfCheck(lambda _request: None)
        check.process_request(request)
        reason = check.process_view(request, None, (), {})
        if reason is not None:
            raise ApiError(403, f"CSRF check failed: {reason}", error="csrf_failed")
    actor = Actor.from_request(request)
    request.headwind_actor = actor
    return actor


def _may_read(actor: Actor, verb: str, namespace: str = "", name: str = "") -> None:
    """Kubernetes callers need RBAC to read UpdateRequests; Django users only to be signed in."""
    if not actor.is_kubernetes:
        return
    try:
        allowed, _why = subject_access_review(actor, verb=verb, group="headwind.sh",
                                              resource="updaterequests",
                                              namespace=namespace, name=name)
    except kube.KubeError:
        raise ApiError(503, "the Kubernetes API server could not check access; try again") \
            from None
    if not allowed:
        where = f"namespace {namespace}" if namespace else "all namespaces"
        hint = "" if namespace else "; filter by namespace="
        raise ApiError(403, f"Kubernetes RBAC does not allow {actor.kube_user} to {verb} "
                            f"updaterequests.headwind.sh in {where}{hint}")


def endpoint(*methods: str):
    """JSON endpoint: method check, authentication, errors as JSON."""
    def decorate(view):
        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.method not in methods:
                return error_response(405, f"use {' or '.join(methods)}",
                                      headers={"Allow": ", ".join(methods)})
            try:
                actor = authenticate(request)
                return view(request, actor, *args, **kwargs)
            except ApiError as exc:
                return error_response(exc.status, exc.reason, exc.error, exc.headers)
            except ServiceError as exc:
                return error_response(status_for(exc), exc.reason)
            except InvalidFilter as exc:
                return error_response(400, str(exc))
            except DatabaseError:
                log.exception("database error in %s", request.path)
                return error_response(503, "the database is busy; try again",
                                      headers={"Retry-After": "1"})
            except Exception:  # noqa: BLE001 - an API answers JSON, never an HTML 500 page
                log.exception("unexpected error in %s", request.path)
                return error_response(500, "internal error; it has been logged")
        return wrapper
    return decorate


# --------------------------------------------------------------------------------------------
# Representation
# --------------------------------------------------------------------------------------------


def _time(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def serialize(row: UpdateRequest) -> dict:
    return {
        "namespace": row.namespace,
        "name": row.name,
        "uid": row.uid,
        "resourceVersion": row.resource_version,
        "target": {"apiVersion": row.target_api_version, "kind": row.target_kind,
                   "name": row.target_name, "container": row.container},
        "currentImage": row.current_image,
        "newImage": row.new_image,
        "newDigest": row.new_digest or None,
        "chart": {"name": row.chart_name, "sourceURL": row.chart_source,
                  "currentVersion": row.current_version,
                  "newVersion": row.new_version} if row.chart_name else None,
        "policy": row.policy,
        "reason": row.reason,
        "source": row.source or None,
        "phase": row.phase,
        "approvalsRequired": row.approvals_required,
        "approvals": [
            {"user": str(a.get("user", "")), "at": a.get("at"),
             **({"comment": a["comment"]} if a.get("comment") else {})}
            for a in row.approvals or [] if isinstance(a, dict)
        ],
        "approvedBy": row.approved_by or None,
        "approvedAt": _time(row.approved_at),
        "rejectedBy": row.rejected_by or None,
        "rejectedAt": _time(row.rejected_at),
        "supersededBy": row.superseded_by or None,
        "message": row.message,
        "createdAt": _time(row.created_at),
        "expiresAt": _time(row.expires_at),
        "completedAt": _time(row.completed_at),
        "scheduledFor": _time(row.scheduled_for),
        "updatedAt": _time(row.status_updated_at),
    }


# --------------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------------


def _positive_int(params, name: str, default: int, maximum: int | None = None) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ApiError(400, f"{name} must be a whole number") from None
    if value < 1 or (maximum is not None and value > maximum):
        limit = f" and at most {maximum}" if maximum else ""
        raise ApiError(400, f"{name} must be at least 1{limit}")
    return value


@endpoint("GET")
def list_updates(request, actor: Actor):
    params = request.GET
    page = _positive_int(params, "page", 1)
    page_size = _positive_int(params, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    if actor.is_kubernetes:
        namespaces = [n.strip() for n in (params.get("namespace") or "").split(",")
                      if n.strip()]
        for namespace in namespaces or [""]:
            _may_read(actor, "list", namespace)
    rows = filter_requests(params, strict=True)
    total = rows.count()
    start = (page - 1) * page_size
    items = [serialize(row) for row in rows[start:start + page_size]] if start < total else []
    return JsonResponse({"total": total, "page": page, "page_size": page_size,
                         "items": items})


def _row(namespace: str, name: str) -> UpdateRequest:
    row = UpdateRequest.objects.filter(namespace=namespace, name=name).first()
    if row is None:
        raise ApiError(404, f"no update request {namespace}/{name}"[:300])
    return row


@endpoint("GET")
def get_update(request, actor: Actor, namespace: str, name: str):
    _may_read(actor, "get", namespace, name)
    row = _row(namespace, name)
    body = serialize(row)
    if actor.is_kubernetes:  # what RBAC says about this very workload
        try:
            allowed, reason = authorize(actor, namespace, row.target_kind, row.target_name)
        except kube.KubeError:
            allowed, reason = False, "the Kubernetes API server could not check access"
    else:
        allowed, reason = services.can_approve(actor, namespace)
    body["viewer"] = {"username": actor.username, "canApprove": allowed,
                      "reason": reason if not allowed else ""}
    return JsonResponse(body)


def _body(request) -> dict:
    try:
        raw = request.body
    except RequestDataTooBig:
        raise ApiError(400, "request body too large") from None
    content_type = (request.content_type or "").lower()
    if content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return {key: request.POST.get(key) for key in request.POST}
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data


@endpoint("POST")
def approve_update(request, actor: Actor, namespace: str, name: str):
    data = _body(request)
    comment = data.get("comment", "")
    if comment is not None and not isinstance(comment, str):
        raise ApiError(400, "comment must be a string")
    row = services.approve(actor, namespace, name, comment=comment or "")
    return JsonResponse(serialize(row))


@endpoint("POST")
def reject_update(request, actor: Actor, namespace: str, name: str):
    data = _body(request)
    reason = data.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise ApiError(400, "a reason is required: {\"reason\": \"...\"}")
    row = services.reject(actor, namespace, name, reason)
    return JsonResponse(serialize(row))


@csrf_exempt
def openapi_document(request):
    if request.method not in ("GET", "HEAD"):
        return error_response(405, "use GET", headers={"Allow": "GET"})
    return JsonResponse(openapi.document(request.build_absolute_uri("/api/v1")))


@csrf_exempt
def not_found(request, rest: str = ""):
    return error_response(404, "no such API endpoint; see /api/v1/openapi.json")
