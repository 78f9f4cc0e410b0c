"""A short ASGI path for registry deliveries: ``POST /webhook/<source>[/<token>]``.

Why: under Django's ASGI handler one delivery cost about 5 ms of CPU, nearly all of it in the
handler's hand-offs between the event loop and the thread that runs sync code and in thirteen
middleware that a machine-to-machine POST does not use (sessions, CSRF, messages, auth, HTMX,
axes, CSP). A registry sends its notifications one at a time, so that cost was both the ingest
ceiling and a hop on every update's path. Here the body is read on the event loop and the very
same view (:func:`registry.views.receive`: authentication, parsing, the Redis publish, every
status code) runs on one thread of its own, so a slow Redis never blocks the loop that serves
the dashboard.

Anything else (other methods, other paths, a ``Host`` that ``ALLOWED_HOSTS`` refuses, a
malformed path) goes to Django unchanged, which answers exactly as before. What a delivery no
longer gets from the middleware: django-prometheus's per-view request metrics (the webhook keeps
``headwind_webhook_events_total``) and the browser-only security headers, apart from the two that
matter for a JSON answer, set below.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse
from django.http.request import split_domain_port, validate_host

from . import views
from .webhooks import MAX_BODY_BYTES

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The URLconf's ``webhook/<slug:source>`` and ``webhook/<slug:source>/<str:token>``.
_PATH = re.compile(r"/webhook/(?P<source>[-a-zA-Z0-9_]+)(?:/(?P<token>[^/]+))?")
_HEADERS = [(b"X-Content-Type-Options", b"nosniff"), (b"X-Frame-Options", b"DENY")]


class WebhookFastPath:
    """ASGI app: deliveries to the view directly, everything else to ``fallback``."""

    def __init__(self, fallback: ASGIApp) -> None:
        self.fallback = fallback
        # One thread: the view's only wait is the Redis publish, well under a millisecond.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="webhook")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _match(scope)
        if match is None:
            return await self.fallback(scope, receive, send)
        body = await _read_body(receive)
        if body is None:  # the client went away
            return None
        request = ASGIRequest(scope, io.BytesIO(body))
        loop = asyncio.get_running_loop()
        response = await loop.run_in_executor(
            self._executor, views.receive, request, match["source"], match["token"])
        await _send(send, response)
        return None


def _match(scope: Scope) -> re.Match | None:
    if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
        return None
    match = _PATH.fullmatch(scope["path"])
    if match is None or not _host_allowed(scope):
        return None
    return match


def _host_allowed(scope: Scope) -> bool:
    """The check Django makes in ``HttpRequest.get_host()``; a refused host goes to Django for
    its usual 400."""
    host = next((value.decode("latin-1") for name, value in scope.get("headers", ())
                 if name == b"host"), None)
    if not host:
        return False
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    domain, _port = split_domain_port(host)
    return bool(domain) and validate_host(domain, allowed)


async def _read_body(receive: Receive) -> bytes | None:
    """At most one byte past the limit: the view answers 413 to anything longer."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        if size <= MAX_BODY_BYTES:
            chunks.append(chunk)
            size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)[:MAX_BODY_BYTES + 1]


async def _send(send: Send, response: HttpResponse) -> None:
    headers = [(name.encode("latin-1"), value.encode("latin-1"))
               for name, value in response.items()]
    await send({"type": "http.response.start", "status": response.status_code,
                "headers": headers + _HEADERS})
    await send({"type": "http.response.body", "body": response.content})
