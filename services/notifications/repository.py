from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from core.models import Notification


class NotificationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, notification: Notification) -> None:
        self.session.add(notification)

    async def by_dedupe_key(self, user_id: uuid.UUID, dedupe_key: str) -> Notification | None:
        statement = sa.select(Notification).where(
            col(Notification.user_id) == user_id, col(Notification.dedupe_key) == dedupe_key
        )
        return (await self.session.scalars(statement)).one_or_none()

    async def list_after(
        self, user_id: uuid.UUID, *, after: int, limit: int
    ) -> Sequence[Notification]:
        statement = (
            sa.select(Notification)
            .where(col(Notification.user_id) == user_id, col(Notification.id) > after)
            .order_by(col(Notification.id))
            .limit(limit)
        )
        return (await self.session.scalars(statement)).all()
