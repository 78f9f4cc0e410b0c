"""ASGI entry point: registry deliveries on a short path (registry/asgi.py), other HTTP through
Django, WebSockets through Channels; every HTTP body bounded (:class:`BoundedBody`)."""

import os

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "headwind_site.settings")
django_asgi_app = get_asgi_application()  # sets Django up before the routes import models

from approvals.routing import websocket_urlpatterns  # noqa: E402
from registry.asgi import WebhookFastPath  # noqa: E402

#: No request Headwind serves carries more (webhooks stop at 2 MiB, forms at Django's
#: DATA_UPLOAD_MAX_MEMORY_SIZE of 2.5 MB).
MAX_REQUEST_BODY_BYTES = 8 * 1024 * 1024


class BoundedBody:
    """413 for a body over ``MAX_REQUEST_BODY_BYTES``, before anyone stores it.

    Django's ASGI handler reads a whole body into a temporary file before it looks at the
    request, so without this a client could fill the pod's disk with one upload. A declared
    ``Content-Length`` is refused at once; a chunked body is counted as it arrives, and the
    application sees the client leave when the count passes the limit."""

    def __init__(self, app, limit: int = MAX_REQUEST_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = next((v for k, v in scope.get("headers", ()) if k == b"content-length"), b"")
        if length.isdigit() and int(length) > self.limit:
            return await self._refuse(send)
        received = 0
        refused = False

        async def bounded_receive():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    refused = True
                    await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        return await self.app(scope, bounded_receive, send)

    async def _refuse(self, send) -> None:
        body = b'{"error": "request body too large"}'
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


application = ProtocolTypeRouter(
    {
        "http": BoundedBody(WebhookFastPath(django_asgi_app)),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
