"""The dashboard's WebSocket: signed-in browsers hear which UpdateRequests changed."""

from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .live import GROUP

#: Close code sent (before the handshake completes, so the client sees a refused upgrade).
UNAUTHENTICATED = 4401


class UpdatesConsumer(AsyncJsonWebsocketConsumer):
    """``/ws/updates/``: joins the ``updaterequests`` group; anonymous sockets are refused.

    Messages from the browser are ignored: the socket only carries notifications outwards.
    """

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=UNAUTHENTICATED)
            return
        self.joined = True
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code) -> None:
        if getattr(self, "joined", False):
            await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        return None

    async def updaterequest_changed(self, event: dict) -> None:
        await self.send_json(event["payload"])
