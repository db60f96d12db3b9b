from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.models import Notification
from services.notifications.hub import NotificationHub
from services.notifications.repository import NotificationRepository
from services.notifications.schemas import NotificationPage, NotificationRead, NotificationType

BACKLOG_LIMIT = 500


log = logging.getLogger(__name__)


class NotificationService:
    def __init__(self, session: AsyncSession, hub: NotificationHub) -> None:
        self.session = session
        self.notifications = NotificationRepository(session)
        self.hub = hub

    async def notify(
        self, user_id: uuid.UUID, type_: NotificationType, payload: dict[str, Any]
    ) -> NotificationRead:
        """Store the notification (commits the session), then push it to connected clients."""
        notification = Notification(user_id=user_id, type=type_.value, payload=payload)
        self.notifications.add(notification)
        await self.session.commit()
        message = NotificationRead.model_validate(notification)
        await self.hub.publish(user_id, message.model_dump(mode="json"))
        return message

    async def notify_if_present(
        self, user_id: uuid.UUID, type_: NotificationType, payload: dict[str, Any]
    ) -> NotificationRead | None:
        """`notify`, for jobs that end after their user may have been deleted: then nobody is
        told (the foreign key refuses the row), instead of retrying forever."""
        try:
            return await self.notify(user_id, type_, payload)
        except IntegrityError:
            await self.session.rollback()
            log.info("notification dropped: user %s no longer exists", user_id)
            return None

    async def list_after(self, user_id: uuid.UUID, *, after: int, limit: int) -> NotificationPage:
        rows = await self.notifications.list_after(user_id, after=after, limit=limit)
        items = [NotificationRead.model_validate(row) for row in rows]
        return NotificationPage(items=items, next_after=items[-1].id if items else after)


async def live_feed(
    hub: NotificationHub,
    sessions: async_sessionmaker[AsyncSession],
    user_id: uuid.UUID,
    *,
    after: int | None,
) -> AsyncGenerator[NotificationRead, None]:
    """What a user's socket receives: first what came after `after` (when given), then new
    notifications as they are published, each exactly once and in order.

    Subscribes before reading the backlog so that nothing published in between is lost, and
    holds a database connection only while it reads the backlog."""
    async with hub.listen(user_id) as queue:
        last_sent = after if after is not None else -1
        if after is not None:
            async with sessions() as session:
                backlog = await NotificationService(session, hub).list_after(
                    user_id, after=after, limit=BACKLOG_LIMIT
                )
            for item in backlog.items:
                yield item
                last_sent = item.id
        while True:
            message = NotificationRead.model_validate(await queue.get())
            if message.id > last_sent:
                last_sent = message.id
                yield message
