"""Registry webhook endpoints: authenticate, parse, queue durably, answer 202."""

from __future__ import annotations

import logging
import time

import redis
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from operator_app import eventqueue
from operator_app.metrics import WEBHOOK_EVENTS

from . import auth
from .webhooks import MAX_BODY_BYTES, PARSERS, HostMap, PayloadError, parse

log = logging.getLogger(__name__)

JSON_TYPES = ("application/json", "application/vnd.docker.distribution.events.v1+json",
              "application/vnd.docker.distribution.events.v2+json",
              "application/cloudevents+json", "application/cloudevents-batch+json", "text/plain",
              "application/x-www-form-urlencoded")
#: Pub/Sub's "payload unwrapping" delivers the message bytes as they were published; the
#: Content-Type it then sends is not documented for messages without one (Artifact Registry's).
EXTRA_TYPES = {"gar": ("application/octet-stream",)}


def _cloudevents_handshake(request) -> HttpResponse:
    """CloudEvents webhook validation (Azure Event Grid's CloudEvents schema) uses OPTIONS."""
    origin = request.headers.get("WebHook-Request-Origin")
    response = HttpResponse(status=200 if origin else 204)
    response["Allow"] = "POST, OPTIONS"
    if origin:
        response["WebHook-Allowed-Origin"] = origin
        response["WebHook-Allowed-Rate"] = "120"
    return response


def _refuse(source: str, status: int, outcome: str, reason: str) -> JsonResponse:
    WEBHOOK_EVENTS.labels(source, outcome).inc()
    log.info("webhook %s refused (%d): %s", source, status, reason)
    return JsonResponse({"error": reason}, status=status)


def _host_map() -> HostMap:
    """HEADWIND_REGISTRY_HOST_MAP, parsed and checked at start by headwind_site.config."""
    return HostMap(settings.HEADWIND.registry_host_map)


@csrf_exempt
def receive(request, source: str, token: str | None = None) -> HttpResponse:
    received = time.time()  # the update's first hop stamp (operator_app/hops.py)
    if source not in PARSERS:
        return JsonResponse({"error": f"unknown webhook source {source!r}"}, status=404)
    if request.method == "OPTIONS":
        return _cloudevents_handshake(request)
    if request.method != "POST":
        response = JsonResponse({"error": "use POST"}, status=405)
        response["Allow"] = "POST, OPTIONS"
        return response
    try:
        length = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        return _refuse(source, 400, "rejected_invalid", "invalid Content-Length")
    if length > MAX_BODY_BYTES:
        return _refuse(source, 413, "rejected_invalid", f"body larger than {MAX_BODY_BYTES} bytes")
    # Read at most one byte past the limit: a chunked body has no Content-Length to check.
    body = request.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        return _refuse(source, 413, "rejected_invalid", f"body larger than {MAX_BODY_BYTES} bytes")
    verdict = auth.check(source, request.headers, body, token, request.GET.get("token"))
    if not verdict.ok:
        return _refuse(source, verdict.status, "rejected_auth", verdict.reason)
    content_type = request.content_type or ""
    if content_type and content_type not in JSON_TYPES + EXTRA_TYPES.get(source, ()):
        return _refuse(source, 415, "rejected_invalid", f"unsupported content type {content_type}")
    try:
        result = parse(source, body, request.headers, _host_map())
    except PayloadError as exc:
        return _refuse(source, 400, "rejected_invalid", exc.reason)
    for reason in result.ignored:
        if reason.startswith("no registry host"):
            log.warning("webhook %s: push ignored, %s", source, reason)
    if result.response is not None:
        WEBHOOK_EVENTS.labels(source, "ignored").inc()
        return JsonResponse(result.response, status=200)
    if not result.events:
        WEBHOOK_EVENTS.labels(source, "ignored").inc()
        return JsonResponse({"accepted": 0, "ignored": result.ignored}, status=202)
    try:
        eventqueue.publish(eventqueue.shared(), result.events, received=received)
    except redis.RedisError as exc:
        log.error("webhook %s: event queue unavailable: %s", source, exc.__class__.__name__)
        return JsonResponse({"error": "event queue unavailable; retry later"}, status=503)
    WEBHOOK_EVENTS.labels(source, "accepted").inc()
    return JsonResponse(
        {"accepted": len(result.events), "ignored": result.ignored,
         "events": [{"repository": e.repository, "tag": e.tag} for e in result.events]},
        status=202,
    )
