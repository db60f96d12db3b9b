from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from core.db import paginate
from core.models import PreviewLog, PreviewShare, PreviewSource, Project


class PreviewRepository:
    """Builds, sources and shares. Reads are scoped to who may see them: a build is visible to
    its project's owner and to the users it was shared with, and to nobody else."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, build_id: str) -> PreviewLog | None:
        statement = sa.select(PreviewLog).where(col(PreviewLog.build_id) == build_id)
        return (await self.session.scalars(statement)).first()

    async def get_owned(self, build_id: str, owner_id: uuid.UUID) -> PreviewLog | None:
        statement = (
            sa.select(PreviewLog)
            .join(Project, col(Project.id) == col(PreviewLog.project_id))
            .where(col(PreviewLog.build_id) == build_id, col(Project.owner_id) == owner_id)
        )
        return (await self.session.scalars(statement)).first()

    async def get_visible(self, build_id: str, user_id: uuid.UUID) -> PreviewLog | None:
        shared_with_user = (
            sa.select(col(PreviewShare.id))
            .where(
                col(PreviewShare.preview_id) == col(PreviewLog.id),
                col(PreviewShare.recipient_id) == user_id,
            )
            .exists()
        )
        statement = (
            sa.select(PreviewLog)
            .join(Project, col(Project.id) == col(PreviewLog.project_id))
            .where(col(PreviewLog.build_id) == build_id)
            .where(sa.or_(col(Project.owner_id) == user_id, shared_with_user))
        )
        return (await self.session.scalars(statement)).first()

    async def list_for_project(
        self, project_id: uuid.UUID, *, limit: int, offset: int
    ) -> tuple[Sequence[PreviewLog], int]:
        statement = (
            sa.select(PreviewLog)
            .where(col(PreviewLog.project_id) == project_id)
            .order_by(col(PreviewLog.requested_at).desc(), col(PreviewLog.id))
        )
        return await paginate(self.session, statement, limit=limit, offset=offset)

    def add_share(self, share: PreviewShare) -> None:
        self.session.add(share)

    async def get_source(self, source_id: uuid.UUID, project_id: uuid.UUID) -> PreviewSource | None:
        statement = sa.select(PreviewSource).where(
            col(PreviewSource.id) == source_id, col(PreviewSource.project_id) == project_id
        )
        return (await self.session.scalars(statement)).first()

    async def find_source(self, project_id: uuid.UUID, source_hash: str) -> PreviewSource | None:
        statement = sa.select(PreviewSource).where(
            col(PreviewSource.project_id) == project_id,
            col(PreviewSource.source_hash) == source_hash,
        )
        return (await self.session.scalars(statement)).first()

    async def share_exists(self, preview_id: uuid.UUID, recipient_id: uuid.UUID) -> bool:
        statement = sa.select(col(PreviewShare.id)).where(
            col(PreviewShare.preview_id) == preview_id,
            col(PreviewShare.recipient_id) == recipient_id,
        )
        return (await self.session.scalars(statement)).first() is not None
