from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from core.db import paginate
from core.models import Project


class ProjectRepository:
    """Reads are scoped to an owner: another user's project is indistinguishable from a
    missing one."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_owned(self, project_id: uuid.UUID, owner_id: uuid.UUID) -> Project | None:
        statement = sa.select(Project).where(
            col(Project.id) == project_id, col(Project.owner_id) == owner_id
        )
        return (await self.session.scalars(statement)).first()

    async def list_owned(
        self, owner_id: uuid.UUID, *, limit: int, offset: int
    ) -> tuple[Sequence[Project], int]:
        statement = (
            sa.select(Project)
            .where(col(Project.owner_id) == owner_id)
            .order_by(col(Project.created_at).desc(), col(Project.id))
        )
        return await paginate(self.session, statement, limit=limit, offset=offset)

    async def name_taken(
        self, owner_id: uuid.UUID, name: str, *, excluding: uuid.UUID | None = None
    ) -> bool:
        statement = sa.select(col(Project.id)).where(
            col(Project.owner_id) == owner_id, sa.func.lower(col(Project.name)) == name.lower()
        )
        if excluding is not None:
            statement = statement.where(col(Project.id) != excluding)
        return (await self.session.scalars(statement.limit(1))).first() is not None

    def add(self, project: Project) -> None:
        self.session.add(project)

    async def delete(self, project: Project) -> None:
        await self.session.delete(project)
