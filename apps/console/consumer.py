"""The dashboard's live feed: /admin/console/live/ (WebSocket, the admin's session cookie).

A staff member's socket joins the operations group of each organisation they may see
(cpo.live.operations_group); whatever is announced there (a charger connected or went away, a status
changed, an alert) makes the consumer read the dashboard again for that user (at most once per
CPO_CONSOLE_LIVE_MIN_INTERVAL_S) and send it. The page may also ask for a fresh read ({"type": "refresh"}):
silence is not announced by anyone. Anyone else is refused (close code 4403)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from apps.console.selectors import dashboard_snapshot, organisation_ids_seen
from cpo import live

logger = logging.getLogger(__name__)
FORBIDDEN = 4403


def min_interval_s() -> float:
    return float(getattr(settings, "CPO_CONSOLE_LIVE_MIN_INTERVAL_S", 0.5))


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    groups: list[str] = []

    async def connect(self) -> None:
        self.user = self.scope.get("user")
        self.joined: list[str] = []
        self._pending: asyncio.Task | None = None
        if not (
            self.user is not None
            and getattr(self.user, "is_authenticated", False)
            and self.user.is_active
            and self.user.is_staff
        ):
            await self.close(code=FORBIDDEN)
            return
        organisation_ids = await database_sync_to_async(organisation_ids_seen)(self.user)
        for organisation_id in organisation_ids:
            group = live.operations_group(organisation_id)
            await self.channel_layer.group_add(group, self.channel_name)
            self.joined.append(group)
        await self.accept()
        await self._send_snapshot()

    async def disconnect(self, code: int) -> None:
        if self._pending is not None:
            self._pending.cancel()
        for group in self.joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "refresh":
            self._schedule()

    async def operations_changed(self, event: dict[str, Any]) -> None:
        self._schedule()

    def _schedule(self) -> None:
        """One read for any number of announcements within the interval."""
        if self._pending is None or self._pending.done():
            self._pending = asyncio.ensure_future(self._send_later())

    async def _send_later(self) -> None:
        await asyncio.sleep(min_interval_s())
        await self._send_snapshot()

    async def _send_snapshot(self) -> None:
        try:
            snapshot = await database_sync_to_async(dashboard_snapshot)(self.user)
        except Exception:
            logger.exception("dashboard snapshot for user %s failed", getattr(self.user, "pk", None))
            return
        await self.send_json({"type": "snapshot", "snapshot": snapshot})
