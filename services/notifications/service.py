from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db import insert_or_existing
from core.models import Notification
from services.notifications.hub import NotificationHub
from services.notifications.repository import NotificationRepository
from services.notifications.schemas import NotificationPage, NotificationRead, NotificationType

BACKLOG_LIMIT = 500
# Redis answers a publish in milliseconds; one that hangs must not hold the sender.
PUBLISH_TIMEOUT_S = 5.0


log = logging.getLogger(__name__)


class NotificationService:
    def __init__(self, session: AsyncSession, hub: NotificationHub) -> None:
        self.session = session
        self.notifications = NotificationRepository(session)
        self.hub = hub

    async def notify(
        self,
        user_id: uuid.UUID,
        type_: NotificationType,
        payload: dict[str, Any],
        *,
        dedupe_key: str | None = None,
    ) -> NotificationRead:
        """Store the notification (commits the session), then push it to connected clients.

        With a `dedupe_key`, a notification already stored under it is pushed again instead of
        a second one stored: a sender that retries (a job's outcome) announces its event once.
        Pushing is best effort: clients that missed it poll, or replay from their cursor."""
        row = Notification(user_id=user_id, type=type_.value, payload=payload)
        if dedupe_key is None:
            self.notifications.add(row)
            await self.session.commit()
        else:
            row.dedupe_key = dedupe_key
            row = await insert_or_existing(
                self.session,
                row,
                lambda: self.notifications.by_dedupe_key(user_id, dedupe_key),
            )
        message = NotificationRead.model_validate(row)
        await self._push(user_id, message)
        return message

    async def notify_if_present(
        self,
        user_id: uuid.UUID,
        type_: NotificationType,
        payload: dict[str, Any],
        *,
        dedupe_key: str | None = None,
    ) -> NotificationRead | None:
        """`notify`, for jobs that end after their user may have been deleted: then nobody is
        told (the foreign key refuses the row), instead of retrying forever."""
        try:
            return await self.notify(user_id, type_, payload, dedupe_key=dedupe_key)
        except IntegrityError:
            await self.session.rollback()
            log.info("notification dropped: user %s no longer exists", user_id)
            return None

    async def _push(self, user_id: uuid.UUID, message: NotificationRead) -> None:
        """Publish to connected sockets; a failure (Redis down) is logged, not raised: the row
        is stored, and raising would only make the sender retry what is already done."""
        try:
            await asyncio.wait_for(
                self.hub.publish(user_id, message.model_dump(mode="json")), PUBLISH_TIMEOUT_S
            )
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning(
                "notification %s stored but not pushed (%s); clients get it by polling",
                message.id,
                type(exc).__name__,
            )

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
