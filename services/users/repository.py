from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from core.db import paginate
from core.models import User


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: uuid.UUID) -> User | None:
        return await self.session.get(User, user_id)

    async def get_by_login(self, login: str) -> User | None:
        """By username (any case) or by email."""
        login = login.strip().lower()
        statement = sa.select(User).where(
            sa.or_(sa.func.lower(col(User.username)) == login, col(User.email) == login)
        )
        return (await self.session.scalars(statement.limit(1))).first()

    async def taken_fields(
        self, *, email: str | None, username: str | None, excluding: uuid.UUID | None = None
    ) -> list[str]:
        """Which of `email` / `username` already belong to another account."""
        conditions = []
        if email is not None:
            conditions.append(col(User.email) == email.lower())
        if username is not None:
            conditions.append(sa.func.lower(col(User.username)) == username.lower())
        if not conditions:
            return []
        statement = sa.select(col(User.email), col(User.username)).where(sa.or_(*conditions))
        if excluding is not None:
            statement = statement.where(col(User.id) != excluding)
        taken: set[str] = set()
        for row_email, row_username in (await self.session.execute(statement)).all():
            if email is not None and row_email == email.lower():
                taken.add("email")
            if username is not None and row_username.lower() == username.lower():
                taken.add("username")
        return sorted(taken)

    def add(self, user: User) -> None:
        self.session.add(user)

    async def search_by_username_prefix(
        self, prefix: str, *, excluding: uuid.UUID, limit: int, offset: int
    ) -> tuple[Sequence[User], int]:
        pattern = _escape_like(prefix.lower()) + "%"
        statement = (
            sa.select(User)
            .where(sa.func.lower(col(User.username)).like(pattern, escape="\\"))
            .where(col(User.id) != excluding)
            .order_by(sa.func.lower(col(User.username)), col(User.id))
        )
        return await paginate(self.session, statement, limit=limit, offset=offset)
