"""ASGI entry point: registry deliveries on a short path (registry/asgi.py), other HTTP through
Django, WebSockets through Channels."""

import os

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "headwind_site.settings")
django_asgi_app = get_asgi_application()  # sets Django up before the routes import models

from approvals.routing import websocket_urlpatterns  # noqa: E402
from registry.asgi import WebhookFastPath  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": WebhookFastPath(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
