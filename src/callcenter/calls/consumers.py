"""The Call Center screen's live channel: ``/ws/callcenter/``.

Rules
- Only a logged-in user (the session, through AuthMiddlewareStack) who is a resource or an administrator is let in;
  anyone else is refused before the socket opens.
- A resource joins ``resource-<id>``; an administrator also joins ``administrators``. What live.py pushes to those
  groups is forwarded as it is, as JSON; a push that reaches the screen through both groups (an administrator's own
  call) is forwarded once (by its push_id).
- The browser only listens: anything it sends is ignored, except ``{"type": "ping"}``, answered with a pong so that
  it can tell a dead connection from a quiet one.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from callcenter.calls import live
from callcenter.resources.permissions import is_administrator, resource_of

# A close code in the 4000s reaches the browser as it is: 4401 = log in first, 4403 = not a resource.
CLOSE_NOT_LOGGED_IN = 4401
CLOSE_NOT_ALLOWED = 4403


def _groups_for(user: Any) -> list[str]:
    groups = []
    resource = resource_of(user)
    if resource is not None:
        groups.append(live.resource_group(resource.pk))
    if is_administrator(user):
        groups.append(live.ADMINISTRATORS)
    return groups


class CallCenterConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        self.joined: list[str] = []
        self.seen: deque[str] = deque(maxlen=256)
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_NOT_LOGGED_IN)
            return
        groups = await database_sync_to_async(_groups_for)(user)
        if not groups:
            await self.close(code=CLOSE_NOT_ALLOWED)
            return
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
        self.joined = groups
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for group in self.joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.joined = []

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        try:
            return await super().decode_json(text_data)
        except ValueError:
            return None  # not JSON: ignored like any other message from the browser

    async def _forward(self, event: dict[str, Any]) -> None:
        push_id = event.get("push_id")
        if push_id:
            if push_id in self.seen:
                return
            self.seen.append(push_id)
        await self.send_json(event)

    async def call_changed(self, event: dict[str, Any]) -> None:
        await self._forward(event)

    async def calls_cleared(self, event: dict[str, Any]) -> None:
        await self._forward(event)

    async def agent_changed(self, event: dict[str, Any]) -> None:
        await self._forward(event)

    async def bridge_changed(self, event: dict[str, Any]) -> None:
        await self._forward(event)

    async def leg_ringing(self, event: dict[str, Any]) -> None:
        await self._forward(event)

    async def leg_ended(self, event: dict[str, Any]) -> None:
        await self._forward(event)
