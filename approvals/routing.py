"""WebSocket routes of the approvals app (mounted by ``headwind_site.asgi``)."""

from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path("ws/updates/", consumers.UpdatesConsumer.as_asgi(), name="ws-updates"),
]
